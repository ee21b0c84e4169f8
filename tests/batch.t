#!/usr/bin/perl
# Blocks of tokens: a prompt run in blocks of 1, 7 or 64 tokens gives the same logits
# (within 1e-6 of each row's max |logit|; the kernels keep one summation order, so they are
# identical in practice), the same --stats and the same generated tokens, for every example
# on configurations no golden covers (data-dependent experts, top-k routing and shared
# softmax included). Generation after a prompt computes only the last row's logits (the
# classifier runs for `T - t0` rows); --max-batch bounds --batch.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Golden qw(run_cmd);

my $kiln = Golden::kiln();
my $dir  = Golden::tmpdir();

my @cases = (
    # [name, spec, -D values, extra run arguments]
    ['llama-gqa3', 'examples/llama.kiln', 'dim=48 heads=6 kv_heads=2 hidden=80 layers=3 vocab=97 ctx=96'],
    ['llama2c', 'examples/llama2c.kiln', 'dim=40 heads=5 kv_heads=5 hidden=72 layers=2 vocab=61 ctx=80'],
    ['dsmoe-tau', 'examples/dsmoe.kiln', 'dim=32 heads=4 kv_heads=2 hidden=96 experts=6 layers=3 vocab=70 ctx=64',
     '--set', 'tau=0.45'],
    ['mixtral-top3', 'examples/mixtral.kiln', 'dim=32 heads=4 kv_heads=1 hidden=48 experts=5 top_k=3 layers=2 vocab=50 ctx=64'],
    ['uniattn-g2', 'examples/uniattn.kiln', 'dim=32 heads=4 kv_heads=2 hidden=48 layers=6 group_size=2 begin=1 end=5 vocab=60 ctx=64'],
    ['finedeep', 'examples/finedeep.kiln', 'dim=32 heads=4 kv_heads=4 sublayers=3 experts=3 expert_hidden=10 layers=2 vocab=45 ctx=64'],
    ['gpt2', 'examples/gpt2.kiln', 'dim=32 heads=2 hidden=64 layers=2 vocab=53 ctx=64'],
    ['gpt-parallel', 'examples/gpt-parallel.kiln', 'dim=48 heads=4 kv_heads=2 hidden=64 layers=2 vocab=41 ctx=64'],
    ['gelu-mlp', 'examples/gelu-mlp.kiln', 'dim=24 heads=3 kv_heads=1 hidden=40 layers=2 vocab=33 ctx=64'],
);


for my $c (@cases) {
    my ($name, $spec, $defs, @run) = @$c;
    my @d = map { ('-D', $_) } split ' ', $defs;
    my ($vocab) = $defs =~ /vocab=(\d+)/;
    my $w = "$dir/$name.safetensors";
    my $prog = "$dir/$name";
    my $r = run_cmd($kiln, 'weights', $spec, @d, '--seed', 5, '-o', $w);
    ok($r->{rc} == 0, "$name: kiln weights") or do { diag(Golden::how($r)); next };
    $r = run_cmd($kiln, 'build', $spec, @d, '--weights', $w, '-o', $prog, '--emit-c', "$prog.c");
    ok($r->{rc} == 0, "$name: kiln build") or do { diag(Golden::how($r)); next };
    my $tokens = join ',', map { ($_ * 29 + 3) % $vocab } 0 .. 44;
    my (%rows, %stats, %gen);
    for my $b (1, 7, 64) {
        my $lf = "$dir/$name-b$b.logits";
        $r = run_cmd($prog, '--tokens', $tokens, '--batch', $b, '--logits', $lf, '--stats', @run);
        $rows{$b} = Golden::read_rows($lf);
        ok($r->{rc} == 0 && $rows{$b} && @{ $rows{$b} } == 45, "$name: --batch $b --logits")
            or diag(Golden::how($r));
        ($stats{$b} = $r->{err}) =~ s/^(?!stat ).*\n//mg;
        $r = run_cmd($prog, '--tokens', $tokens, '--batch', $b, '-n', 10, @run);
        ok($r->{rc} == 0 && $r->{out} =~ /^\d+( \d+){9}\n$/, "$name: --batch $b generates")
            or diag(Golden::how($r));
        $gen{$b} = $r->{out};
    }
    for my $b (7, 64) {
        my $worst = Golden::max_ratio($rows{$b}, $rows{1});
        ok($worst <= 1e-6, sprintf("$name: --batch $b logits equal --batch 1's (worst ratio %.3g)", $worst));
        is($stats{$b}, $stats{1}, "$name: --batch $b --stats equal --batch 1's");
        is($gen{$b}, $gen{1}, "$name: --batch $b generates --batch 1's tokens");
    }
    # the classifier runs for the wanted rows only: T - t0 of them
    my $c_text = Golden::slurp("$prog.c") // '';
    my @tail = $c_text =~ /const int64_t lo = t0, hi = T;[^\n]*\n[^\n]*\n[^\n]*krt_linear\(/g;
    ok(@tail > 0, "$name: some products run only for the rows whose logits are wanted");
}

# --max-batch bounds --batch, and the program says so
my @small = ('-D', 'dim=16', '-D', 'heads=2', '-D', 'kv_heads=1', '-D', 'hidden=24', '-D', 'layers=1',
             '-D', 'vocab=20', '-D', 'ctx=16');
my $r = run_cmd($kiln, 'weights', 'examples/llama.kiln', @small, '-o', "$dir/small.safetensors");
ok($r->{rc} == 0, 'small weights');
$r = run_cmd($kiln, 'build', 'examples/llama.kiln', @small, '--weights', "$dir/small.safetensors",
             '--max-batch', 5, '-o', "$dir/small");
ok($r->{rc} == 0, 'kiln build --max-batch 5') or diag(Golden::how($r));
$r = run_cmd("$dir/small", '--tokens', '1,2,3', '--batch', 6);
ok($r->{rc} == 2 && $r->{err} =~ /--batch: 6 is out of range \[1, 5\]/, '--batch above --max-batch is a usage error')
    or diag(Golden::how($r));
$r = run_cmd("$dir/small", '--help');
ok($r->{out} =~ /blocks of up to 5 tokens/, '--help gives the largest block');
$r = run_cmd("$dir/small", '--tokens', '1,2,3,4,5,6,7,8,9,10,11,12', '--batch', 5, '--logits', "$dir/s5");
my $r1 = run_cmd("$dir/small", '--tokens', '1,2,3,4,5,6,7,8,9,10,11,12', '--batch', 1, '--logits', "$dir/s1");
ok($r->{rc} == 0 && $r1->{rc} == 0 && Golden::slurp("$dir/s5") eq Golden::slurp("$dir/s1"),
   'blocks of 5, 5 and 2 give the logits of one token at a time');
$r = run_cmd($kiln, 'build', 'examples/llama.kiln', @small, '--weights', "$dir/small.safetensors",
             '--max-batch', 0, '-o', "$dir/nope");
ok($r->{rc} == 2 && $r->{err} =~ /--max-batch needs an integer in 1\.\.65536/ && !-e "$dir/nope",
   'kiln build --max-batch 0 is a usage error');
done_testing();
