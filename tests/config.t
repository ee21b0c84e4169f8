#!/usr/bin/perl
# --config reads a config.json fully or refuses it; -w and -Werror; --ctx; declared weights
# nothing reads (not packed, a warning); the RoPE mode a llama2.c checkpoint implies.
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

sub write_file {
    my ($path, $text) = @_;
    open my $fh, '>', $path or die "$path: $!";
    print $fh $text;
    close $fh;
    return $path;
}

# A LLaMA config as Hugging Face writes it (metadata keys included), and the same model in -D.
my %llama = (
    architectures => '["LlamaForCausalLM"]', model_type => '"llama"', torch_dtype => '"float32"',
    transformers_version => '"4.40.0"', initializer_range => '0.02', bos_token_id => '1',
    eos_token_id => '2', hidden_size => '48', intermediate_size => '100',
    num_hidden_layers => '2', num_attention_heads => '6', num_key_value_heads => '2',
    vocab_size => '70', max_position_embeddings => '32', rms_norm_eps => '1e-06',
    rope_theta => '500000.0', tie_word_embeddings => 'false', hidden_act => '"silu"',
    rope_scaling => 'null', attention_bias => 'false', mlp_bias => 'false', head_dim => '8',
    attention_dropout => '0.0',
);
my @llama_d = ('-D', 'dim=48', '-D', 'hidden=100', '-D', 'layers=2', '-D', 'heads=6',
               '-D', 'kv_heads=2', '-D', 'vocab=70', '-D', 'ctx=32', '-D', 'eps=1e-6',
               '-D', 'rope_base=500000', '-D', 'tied=0');

# A config.json: the LLaMA one with some keys replaced (undef: left out).
my $nconf = 0;
sub config {
    my (%over) = @_;
    my %c = (%llama, %over);
    my $text = '{' . join(', ', map { "\"$_\": $c{$_}" } grep { defined $c{$_} } sort keys %c) . "}\n";
    return write_file("$dir/config" . ++$nconf . ".json", $text);
}

# ---- a full LLaMA config builds the model the -D flags build
my $cfg = config();
my $r = run_cmd($kiln, 'weights', 'examples/llama.kiln', '--config', $cfg, '--seed', 4,
                '-o', "$dir/llama.safetensors");
ok($r->{rc} == 0 && $r->{err} eq '', 'weights from --config') or diag(Golden::how($r));
$r = run_cmd($kiln, 'build', 'examples/llama.kiln', '--config', $cfg,
             '--weights', "$dir/llama.safetensors", '-o', "$dir/from-config");
ok($r->{rc} == 0 && $r->{err} eq '', 'build from --config: no message') or diag(Golden::how($r));
$r = run_cmd($kiln, 'build', 'examples/llama.kiln', @llama_d,
             '--weights', "$dir/llama.safetensors", '-o', "$dir/from-d");
ok($r->{rc} == 0, 'build of the same model from -D') or diag(Golden::how($r));
my $a = run_cmd("$dir/from-config", '--tokens', '1,2,3,4', '--logits', "$dir/a.txt");
my $b = run_cmd("$dir/from-d", '--tokens', '1,2,3,4', '--logits', "$dir/b.txt");
ok($a->{rc} == 0 && $b->{rc} == 0 && Golden::slurp("$dir/a.txt") eq Golden::slurp("$dir/b.txt"),
   'the --config program and the -D program give the same logits');

# ---- -v lists the keys the spec does not use; without -v they pass silently
$r = run_cmd($kiln, 'check', 'examples/llama.kiln', '--config', $cfg, '-v');
my ($list) = $r->{err} =~ /^kiln: \Q$cfg\E: keys the spec does not use: (.*)$/m;
ok($r->{rc} == 0 && defined $list, '-v lists the unused keys') or diag(Golden::how($r));
my %unused = map { $_ => 1 } split /, /, $list // '';
ok((!grep { !$unused{$_} } qw(architectures model_type torch_dtype transformers_version
                              initializer_range bos_token_id eos_token_id hidden_act rope_scaling
                              head_dim attention_bias mlp_bias attention_dropout))
   && !$unused{hidden_size} && !$unused{rope_theta}, 'the list: metadata and neutral keys only')
    or diag($list);
$r = run_cmd($kiln, 'check', 'examples/llama.kiln', '--config', $cfg);
ok($r->{rc} == 0 && $r->{err} eq '' && $r->{out} eq '', 'without -v: silent');

# ---- 2048.0 is an integer as far as ctx goes; other number forms
$r = run_cmd($kiln, 'dump', 'examples/llama.kiln', '--after', 'none',
             '--config', config(max_position_embeddings => '2048.0', rms_norm_eps => '1E-5',
                                rope_theta => '1e6'));
ok($r->{rc} == 0 && $r->{out} =~ /^param ctx = 2048$/m && $r->{out} =~ /^param eps = 1e-05$/m
   && $r->{out} =~ /^param rope_base = 1000000$/m,
   'numbers: 2048.0 sets the integer ctx, 1E-5 and 1e6 read') or diag(Golden::how($r));

# ---- each key that changes the computation, at a value the spec cannot honour, is refused
my @refused = (
    [rope_scaling => '{"type": "linear", "factor": 2.0}'],
    [hidden_act => '"gelu"'],
    [head_dim => '16'],
    [attention_bias => 'true'],
    [mlp_bias => 'true'],
    [sliding_window => '4', 'use_sliding_window' => 'true'],
    [use_sliding_window => 'true'],
    [partial_rotary_factor => '0.5'],
    [layer_types => '["full_attention", "sliding_attention"]'],
    [no_rope_layers => '[1, 0]'],
    [quantization_config => '{"bits": 4}'],
    [final_logit_softcapping => '30.0'],
);
for my $case (@refused) {
    my ($key, $value, @more) = @$case;
    my $path = config($key => $value, @more);
    fails_cleanly(run_cmd($kiln, 'check', 'examples/llama.kiln', '--config', $path), 1,
                  qr/^\Q$path\E: error: key "\Q$key\E" is .*spec has no parameter/m,
                  "config key $key = $value is refused, naming the file and the key");
}
# keys the spec has under kiln's names, when the spec lacks that name (gpt2.kiln: no
# kv_heads, rope_base or tied)
my $gpt = write_file("$dir/gpt.json", '{"hidden_size": 64, "intermediate_size": 256, '
    . '"num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 256, '
    . '"layer_norm_epsilon": 1e-5, "n_positions": 128}');
$r = run_cmd($kiln, 'check', 'examples/gpt2.kiln', '--config', $gpt);
ok($r->{rc} == 0 && $r->{err} eq '', 'gpt2.kiln takes a config without kiln-only keys')
    or diag(Golden::how($r));
for my $case (['num_key_value_heads', '2', 'kv_heads'], ['rope_theta', '500000', 'rope_base'],
              ['tie_word_embeddings', 'false', 'tied']) {
    my ($key, $value, $param) = @$case;
    my $path = write_file("$dir/gpt-$key.json", '{"num_attention_heads": 4, "hidden_size": 64, '
                          . "\"$key\": $value}");
    fails_cleanly(run_cmd($kiln, 'check', 'examples/gpt2.kiln', '--config', $path), 1,
                  qr/^\Q$path\E: error: key "$key" is \Q$value\E, but the spec has no parameter '$param'/m,
                  "$key = $value for a spec without '$param' is refused");
}
for my $case (['num_key_value_heads', '4'], ['rope_theta', '10000'], ['tie_word_embeddings', 'true'],
              ['sliding_window', '4096'], ['sliding_window', 'null'], ['head_dim', '16']) {
    my ($key, $value) = @$case;
    my $path = write_file("$dir/gpt-ok-$key.json", '{"num_attention_heads": 4, "hidden_size": 64, '
                          . "\"max_position_embeddings\": 128, \"$key\": $value}");
    $r = run_cmd($kiln, 'check', 'examples/gpt2.kiln', '--config', $path);
    ok($r->{rc} == 0 && $r->{err} eq '', "$key = $value is neutral for gpt2.kiln")
        or diag(Golden::how($r));
}
# a sliding window the context reaches, with windows on
fails_cleanly(run_cmd($kiln, 'check', 'examples/llama.kiln', '--config',
                      config(use_sliding_window => 'false', sliding_window => '8')), 0, qr/^$/,
              'a window with use_sliding_window false is neutral');
# JSON values no parameter takes
fails_cleanly(run_cmd($kiln, 'check', 'examples/llama.kiln', '--config', config(rope_theta => 'null')),
              1, qr/error: key "rope_theta" is null, which no parameter of the spec can take/,
              'null for a parameter the spec has is refused');
# An array for a scalar parameter: the front end's check, naming the file and the key
$r = run_cmd($kiln, 'check', 'examples/llama.kiln', '--config', config(hidden_size => '[48, 48]'));
ok($r->{rc} == 1 && !$r->{sig} && $r->{err} =~ /config\d+\.json: error: key "hidden_size" = 48,48: 'dim' takes one value, not a list/
   && $r->{err} !~ /(?:^|\s)-D/m, 'an array for the scalar dim is refused, naming the file and the key')
    or diag(Golden::how($r));
# a fractional value for an integer parameter, and 2048.0 for one
fails_cleanly(run_cmd($kiln, 'check', 'examples/llama.kiln', '--config', config(num_hidden_layers => '2.5')),
              1, qr/config\d+\.json: error: key "num_hidden_layers" = 2\.5: 'layers' is an integer parameter/, 'a fractional layer count is refused');
# errors from --config never name -D
$r = run_cmd($kiln, 'check', 'examples/llama.kiln', '--config', config(hidden_act => '"gelu"'));
ok($r->{err} !~ /(?:^|\s)-D/m, 'a --config error does not mention -D') or diag(Golden::how($r));
fails_cleanly(run_cmd($kiln, 'check', 'examples/llama.kiln', '--config', write_file("$dir/dup.json",
              '{"hidden_size": 48, "hidden_size": 64}')), 1, qr/dup\.json: error: .*duplicate/,
              'a key given twice in the file is refused');

# ---- --ctx: the spec's ctx, over --config's max_position_embeddings
$r = run_cmd($kiln, 'dump', 'examples/llama.kiln', '--after', 'none', '--config', $cfg, '--ctx', 16);
ok($r->{rc} == 0 && $r->{out} =~ /^param ctx = 16$/m, '--ctx wins over max_position_embeddings')
    or diag(Golden::how($r));
$r = run_cmd($kiln, 'dump', 'examples/llama.kiln', '--after', 'none', '--ctx', 24);
ok($r->{rc} == 0 && $r->{out} =~ /^param ctx = 24$/m, '--ctx without --config');
fails_cleanly(run_cmd($kiln, 'check', 'examples/llama.kiln', '--ctx', 16, '-D', 'ctx=8'), 2,
              qr/'ctx' is given twice/, '-D ctx= and --ctx: given twice');
fails_cleanly(run_cmd($kiln, 'check', 'examples/llama.kiln', '--ctx', 'x'), 2,
              qr/--ctx needs a positive integer/, '--ctx of a non-number');
$r = run_cmd($kiln, 'build', 'examples/llama.kiln', @llama_d[0 .. 11], @llama_d[14 .. 19],
             '--ctx', 8, '--weights', "$dir/llama.safetensors", '-o', "$dir/ctx8");
my $run = run_cmd("$dir/ctx8", '--tokens', '1,2,3,4,5,6,7,8,9');
ok($r->{rc} == 0 && $run->{rc} != 0 && !$run->{sig}, 'build --ctx 8: the program takes 8 positions')
    or diag(Golden::how($r), Golden::how($run));

# ---- a declared weight nothing reads: a warning, not packed, not needed in the checkpoint
my $spec = "$dir/extra.kiln";
{
    my $src = Golden::slurp('examples/llama.kiln');
    $src =~ s/^(\s*)weights \{\n/$1weights {\n$1  extra [dim] = "extra.weight"\n/m or die 'no weights';
    write_file($spec, $src);
}
my @lines = split /\n/, Golden::slurp($spec);
my ($line) = grep { $lines[$_ - 1] =~ /extra \[dim\]/ } 1 .. @lines;
$r = run_cmd($kiln, 'check', $spec, @llama_d);
ok($r->{rc} == 0 && $r->{out} eq ''
   && $r->{err} =~ /^\Q$spec\E:$line:\d+: warning: weight 'extra' is declared but never read; it is not packed$/m,
   'check: the unread weight is a warning at its declaration, exit 0') or diag(Golden::how($r));
my @warned = $r->{err} =~ /warning:/g;
is(scalar @warned, 1, 'one warning for the one declaration');
$r = run_cmd($kiln, 'check', $spec, @llama_d, '-w');
ok($r->{rc} == 0 && $r->{err} eq '', '-w: no warning') or diag(Golden::how($r));
$r = run_cmd($kiln, 'check', $spec, @llama_d, '-Werror');
ok($r->{rc} == 1 && $r->{err} =~ /error: weight 'extra' is declared but never read/,
   '-Werror: the warning is an error, exit 1') or diag(Golden::how($r));
$r = run_cmd($kiln, 'dump', $spec, @llama_d);
ok($r->{rc} == 0 && $r->{out} !~ /extra/ && $r->{out} =~ /model\.norm\.weight/,
   'dump: the tensor table does not list it') or diag(Golden::how($r));
$r = run_cmd($kiln, 'build', $spec, @llama_d, '--weights', "$dir/llama.safetensors", '-o', "$dir/extra");
ok($r->{rc} == 0 && -x "$dir/extra" && $r->{err} =~ /warning: weight 'extra'/,
   'build with a checkpoint that lacks it: builds, with the warning') or diag(Golden::how($r));
$run = run_cmd("$dir/extra", '--tokens', '1,2,3,4', '--logits', "$dir/c.txt");
ok($run->{rc} == 0 && Golden::slurp("$dir/c.txt") eq Golden::slurp("$dir/b.txt"),
   'and computes what the spec without it computes');
$r = run_cmd($kiln, 'build', $spec, @llama_d, '--weights', "$dir/llama.safetensors",
             '-o', "$dir/extra-werror", '-Werror');
ok($r->{rc} == 1 && !-e "$dir/extra-werror", 'build -Werror: exit 1, no program')
    or diag(Golden::how($r));
$r = run_cmd($kiln, 'emit-c', $spec, @llama_d, '-o', "$dir/extra.c", '-Werror');
ok($r->{rc} == 1 && !-e "$dir/extra.c", 'emit-c -Werror: exit 1, no file');
$r = run_cmd($kiln, 'dump', $spec, @llama_d, '-Werror');
ok($r->{rc} == 1 && $r->{out} eq '', 'dump -Werror: exit 1, no dump');
$r = run_cmd($kiln, 'build', $spec, @llama_d, '--weights', "$dir/llama.safetensors",
             '-o', "$dir/extra-w", '-w');
ok($r->{rc} == 0 && $r->{err} eq '' && -x "$dir/extra-w", 'build -w: silent') or diag(Golden::how($r));
$r = run_cmd($kiln, '--help');
ok($r->{out} =~ /^\s+-w\s/m && $r->{out} =~ /^\s+-Werror\s/m && $r->{out} =~ /^\s+--ctx N\s/m,
   '--help documents -w, -Werror and --ctx');

# ---- llama2.c checkpoints pair RoPE dimensions as "interleaved"
my @l2c = ('-D', 'dim=48', '-D', 'hidden=80', '-D', 'layers=2', '-D', 'heads=6',
           '-D', 'kv_heads=2', '-D', 'vocab=70', '-D', 'ctx=32', '-D', 'tied=1');
my $bin = "$dir/l2c.bin";
$r = run_cmd($kiln, 'weights', 'examples/llama2c.kiln', @l2c, '--format', 'llama2c', '-o', $bin);
ok($r->{rc} == 0, 'a llama2.c checkpoint') or diag(Golden::how($r));
$r = run_cmd($kiln, 'build', 'examples/llama2c.kiln', '--weights', $bin, '-o', "$dir/l2c");
ok($r->{rc} == 0 && $r->{err} eq '', 'llama2c.kiln ("interleaved") with it: no warning')
    or diag(Golden::how($r));
$r = run_cmd($kiln, 'build', 'examples/llama.kiln', '--weights', $bin, '-o', "$dir/l2c-half");
ok($r->{rc} == 0 && $r->{err} =~ /^\Q$bin\E: warning: examples\/llama\.kiln uses RoPE mode "half", but a llama2\.c checkpoint implies "interleaved" \(adjacent pairs\); the logits will be wrong$/m,
   'llama.kiln ("half") with it: the warning at the checkpoint') or diag(Golden::how($r));
$r = run_cmd($kiln, 'build', 'examples/llama2c.kiln', '--weights', $bin, '-o', "$dir/l2c-ctx",
             '--ctx', 8);
$run = run_cmd("$dir/l2c-ctx", '--tokens', '1,2,3,4,5,6,7,8,9');
ok($r->{rc} == 0 && $run->{rc} != 0 && $run->{err} =~ /context holds 8/,
   '--ctx over the llama2.c header\'s seq_len') or diag(Golden::how($r), Golden::how($run));
$r = run_cmd($kiln, 'build', 'examples/llama.kiln', '--weights', $bin, '-o', "$dir/l2c-werror", '-Werror');
ok($r->{rc} == 1 && !-e "$dir/l2c-werror", '... an error with -Werror, no program');

done_testing();
