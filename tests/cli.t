#!/usr/bin/perl
# The command lines of `kiln` and of a compiled program: usage errors, hyperparameters taken
# from a llama2.c header, run-time parameters (--set), statistics, emit-c and inspect.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Golden qw(run_cmd);

my $kiln = Golden::kiln();
my $dir  = Golden::tmpdir();

sub fails_cleanly {
    my ($r, $rc, $pattern, $label) = @_;
    ok(!$r->{sig} && $r->{rc} == $rc && $r->{err} =~ $pattern, $label)
        or diag(Golden::how($r));
}

# ---- kiln's own command line
my $r = run_cmd($kiln, '--help');
ok($r->{rc} == 0 && $r->{out} =~ /usage: kiln COMMAND/ && $r->{out} =~ /build SPEC --weights FILE/,
   'kiln --help explains the commands');
fails_cleanly(run_cmd($kiln), 2, qr/no command given/, 'kiln with no command: usage error');
fails_cleanly(run_cmd($kiln, 'frobnicate', 'x.kiln'), 2, qr/unknown command 'frobnicate'/,
              'unknown command');
fails_cleanly(run_cmd($kiln, 'build', 'examples/llama.kiln', '--weights', 'x'), 2,
              qr/build needs -o PROG/, 'build without -o');
fails_cleanly(run_cmd($kiln, 'check', 'examples/llama.kiln', '--bogus'), 2,
              qr/unknown option '--bogus'/, 'unknown option');
fails_cleanly(run_cmd($kiln, 'check', 'examples/llama.kiln', '-D', 'nope=1'), 1,
              qr/-D: error: model 'llama' has no parameter 'nope'/, '-D of an unknown parameter');
fails_cleanly(run_cmd($kiln, 'check', 'tests/no-such-spec.kiln'), 1,
              qr{tests/no-such-spec\.kiln: error: cannot read}, 'a missing spec file');
fails_cleanly(run_cmd($kiln, 'dump', 'examples/llama.kiln', '--after', 'nosuchpass'), 1,
              qr/no pass named 'nosuchpass'/, 'dump --after an unknown pass');
$r = run_cmd($kiln, 'check', 'examples/llama.kiln');
ok($r->{rc} == 0 && $r->{out} eq '' && $r->{err} eq '', 'check of a valid spec prints nothing');
fails_cleanly(run_cmd($kiln, 'check', 'examples/llama.kiln', '-D', 'dim=abc'), 1,
              qr/^-D: error: dim=abc: 'dim' is an integer parameter$/m, '-D of a non-integer for an integer');
fails_cleanly(run_cmd($kiln, 'check', 'examples/dsmoe.kiln', '-D', 'tau=1e400'), 1,
              qr/tau=1e400: 'tau' is a number parameter/, '-D of an infinite number');
fails_cleanly(run_cmd($kiln, 'check', 'examples/llama.kiln', '-D', 'dim=32', '-D', 'dim=16'), 1,
              qr/'dim' is given twice/, 'the same -D twice');

# ---- --config: Hugging Face config.json keys under kiln's parameter names; -D wins
{
    open my $fh, '>', "$dir/config.json" or die;
    print $fh '{"architectures": ["LlamaForCausalLM"], "hidden_size": 48, "intermediate_size": 100,'
            . ' "num_hidden_layers": 2, "num_attention_heads": 6, "num_key_value_heads": 2,'
            . ' "vocab_size": 70, "max_position_embeddings": 32, "rms_norm_eps": 1e-06,'
            . ' "rope_theta": 500000.0, "tie_word_embeddings": false}';
    close $fh;
}
$r = run_cmd($kiln, 'dump', 'examples/llama.kiln', '--config', "$dir/config.json", '-D', 'layers=1');
ok($r->{rc} == 0 && $r->{out} =~ /^param dim = 48$/m && $r->{out} =~ /^param kv_heads = 2$/m
   && $r->{out} =~ /^param rope_base = 500000$/m && $r->{out} =~ /^param tied = 0$/m
   && $r->{out} =~ /^param layers = 1$/m && $r->{out} =~ /"lm_head\.weight"/,
   '--config sets the parameters from config.json, -D overrides it') or diag(Golden::how($r));
open my $bad, '>', "$dir/bad.json" or die;
print $bad "{\"hidden_size\": 48,\n";
close $bad;
fails_cleanly(run_cmd($kiln, 'check', 'examples/llama.kiln', '--config', "$dir/bad.json"), 1,
              qr/bad\.json: error: line \d+/, 'a malformed config.json is reported with its place');

# ---- a llama2.c checkpoint carries its hyperparameters: no -D needed to build against it
my @gqa = ('-D', 'dim=48', '-D', 'hidden=80', '-D', 'layers=2', '-D', 'heads=6',
           '-D', 'kv_heads=2', '-D', 'vocab=70', '-D', 'ctx=32', '-D', 'tied=0');
my $bin = "$dir/gqa.bin";
$r = run_cmd($kiln, 'weights', 'examples/llama2c.kiln', @gqa, '--format', 'llama2c',
             '--seed', 3, '-o', $bin);
ok($r->{rc} == 0 && -s $bin, 'kiln weights --format llama2c (GQA 3:1, untied)') or diag(Golden::how($r));
$r = run_cmd($kiln, 'build', 'examples/llama2c.kiln', '--weights', $bin, '-o', "$dir/implied");
ok($r->{rc} == 0 && -x "$dir/implied", 'build from a .bin without -D takes the header\'s parameters')
    or diag(Golden::how($r));
$r = run_cmd($kiln, 'build', 'examples/llama2c.kiln', '--weights', $bin, '-o', "$dir/explicit", @gqa);
ok($r->{rc} == 0, 'the same build with explicit -D') or diag(Golden::how($r));
my $a = run_cmd("$dir/implied", '--tokens', '1,2,3', '--logits', "$dir/a.txt");
my $b = run_cmd("$dir/explicit", '--tokens', '1,2,3', '--logits', "$dir/b.txt");
ok($a->{rc} == 0 && $b->{rc} == 0 && Golden::slurp("$dir/a.txt") eq Golden::slurp("$dir/b.txt"),
   'both programs compute the same logits');
$r = run_cmd($kiln, 'build', 'examples/llama2c.kiln', '--weights', $bin, '-o', "$dir/lie",
             '-D', 'heads=3');
ok($r->{rc} != 0 && !$r->{sig} && !-e "$dir/lie", 'an explicit -D that contradicts the header fails');
$r = run_cmd($kiln, 'inspect', $bin);
ok($r->{rc} == 0 && $r->{out} =~ /llama2\.c v0/ && $r->{out} =~ /lm_head\.weight/,
   'inspect lists the .bin tensors under their names') or diag(Golden::how($r));

# ---- emit-c writes a C file that defines the model
$r = run_cmd($kiln, 'emit-c', 'examples/llama.kiln', '-o', "$dir/llama.c");
my $c = Golden::slurp("$dir/llama.c") // '';
ok($r->{rc} == 0 && $c =~ /const krt_model kiln_model/ && $c =~ /krt_linear/,
   'emit-c writes the model in C');

# ---- DSMoE's run-time parameter tau and its statistic
my @moe = ('-D', 'dim=32', '-D', 'hidden=64', '-D', 'layers=2', '-D', 'heads=2', '-D', 'kv_heads=2',
           '-D', 'experts=4', '-D', 'vocab=40', '-D', 'ctx=16');
my $st = "$dir/moe.safetensors";
$r = run_cmd($kiln, 'weights', 'examples/dsmoe.kiln', @moe, '--seed', 5, '-o', $st);
ok($r->{rc} == 0, 'dsmoe weights');
$r = run_cmd($kiln, 'build', 'examples/dsmoe.kiln', @moe, '--weights', $st, '-o', "$dir/moe");
ok($r->{rc} == 0, 'dsmoe build') or diag(Golden::how($r));
my %frac;
for my $tau (qw(0 0.5 1)) {
    my $run = run_cmd("$dir/moe", '--tokens', '1,2,3,4,5', '--set', "tau=$tau", '--stats',
                      '--logits', "$dir/moe-$tau.txt");
    my $s = Golden::parse_stats($run->{err});
    ok($run->{rc} == 0 && exists $s->{'active_fraction[1]'}, "--set tau=$tau runs with --stats")
        or diag(Golden::how($run));
    $frac{$tau} = [ map { 0 + ($s->{"active_fraction[$_]"}{value} // -1) } 0, 1 ];
    my $rows = Golden::read_rows("$dir/moe-$tau.txt") // [];
    ok(@$rows == 5 && !grep({ !/^-?\d/ } map { @$_ } @$rows), "tau=$tau: 5 finite logits rows");
}
is_deeply($frac{0}, [1, 1], 'tau=0: every expert is active in every layer');
is_deeply($frac{1}, [0, 0], 'tau=1: no expert is active (the FFN adds nothing)');
ok($frac{0.5}[0] > 0 && $frac{0.5}[0] < 1, "tau=0.5: some experts active ($frac{0.5}[0])");
$r = run_cmd("$dir/moe", '--tokens', '1', '--set', 'nope=1');
fails_cleanly($r, 2, qr/nope/, '--set of an unknown run-time parameter');
$r = run_cmd("$dir/moe", '--help');
ok($r->{rc} == 0 && $r->{out} =~ /tau/ && $r->{out} =~ /active_fraction/,
   'the program\'s --help lists its run-time parameters and statistics');

# ---- --threads: large products split by rows, results bit-identical for every thread count
my @wide = ('-D', 'dim=128', '-D', 'hidden=384', '-D', 'layers=2', '-D', 'heads=4', '-D', 'kv_heads=2',
            '-D', 'vocab=512', '-D', 'ctx=32');
$r = run_cmd($kiln, 'weights', 'examples/llama.kiln', @wide, '--seed', 9, '-o', "$dir/wide.safetensors");
ok($r->{rc} == 0, 'weights of a model whose products are split across threads');
$r = run_cmd($kiln, 'build', 'examples/llama.kiln', @wide, '--weights', "$dir/wide.safetensors",
             '-o', "$dir/wide", '--emit-c', "$dir/wide.c");
ok($r->{rc} == 0 && Golden::slurp("$dir/wide.c") =~ /krt_linear\(&\(krt_lin\)\{[^}]*\}, sh, nsh, XK\)/,
   'the large products are shared between the threads') or diag(Golden::how($r));
my %out;
for my $t (1, 2, 3) {
    my $run = run_cmd("$dir/wide", '--tokens', '1,2,3,4,5,6', '--logits', "$dir/wide-$t.txt",
                      '--threads', $t);
    my $gen = run_cmd("$dir/wide", '--tokens', '1,2,3', '-n', 8, '--threads', $t);
    ok($run->{rc} == 0 && $gen->{rc} == 0, "--threads $t runs") or diag(Golden::how($run));
    $out{$t} = Golden::slurp("$dir/wide-$t.txt") . $gen->{out};
}
ok($out{1} eq $out{2} && $out{1} eq $out{3}, 'logits and tokens are identical with 1, 2 and 3 threads');

done_testing();
