#!/usr/bin/perl
# Hugging Face folders and weights bound to views of stored tensors.
#
# A folder made here from `kiln weights` output (bf16), with a config.json written here and
# the safetensors split into two shards and an index by the helpers below, builds with
# `--weights DIR` and no -D, with the logits of the single-file build given every parameter
# as -D, bit for bit, and its blob holds bf16 weights; hostile folders fail cleanly, naming
# the file. GPT-2 in the real Hugging Face layout (Conv1D weights [in, out], q k v fused in
# c_attn) builds from the checkpoint as stored, with the logits of the split, [out, in]
# layout of the same values read by tests/hf/gpt2-split.kiln (f32 and bf16). A transposed
# view of block-quantized weights is refused unless they are dequantized.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Golden qw(run_cmd slurp write_file);
use JSON::PP ();
use File::Path qw(make_path);

my $kiln = Golden::kiln();
my $dir = Golden::tmpdir();

sub fails_cleanly {
    my ($r, $pattern, $out, $label) = @_;
    ok(!$r->{sig} && $r->{rc} == 1 && $r->{err} =~ $pattern && !-e $out, $label)
        or diag(Golden::how($r));
}

# ---------------------------------------------------------------- safetensors in Perl

# { name => { dtype, shape => [...], bytes } } and the names in file order.
sub read_st {
    my ($path) = @_;
    my $s = slurp($path) // die "$path: $!";
    my ($lo, $hi) = unpack 'V V', $s;
    my $hlen = $lo + $hi * 4294967296;
    my $h = JSON::PP::decode_json(substr $s, 8, $hlen);
    my %t;
    for my $name (grep { $_ ne '__metadata__' } keys %$h) {
        my ($b, $e) = @{ $h->{$name}{data_offsets} };
        $t{$name} = { dtype => $h->{$name}{dtype}, shape => $h->{$name}{shape},
                      bytes => substr($s, 8 + $hlen + $b, $e - $b) };
    }
    my @order = sort { $h->{$a}{data_offsets}[0] <=> $h->{$b}{data_offsets}[0] } keys %t;
    return (\%t, \@order);
}

sub write_st {
    my ($path, $t, @names) = @_;
    my (%h, $data);
    $data = '';
    for my $n (@names) {
        $h{$n} = { dtype => $t->{$n}{dtype}, shape => $t->{$n}{shape},
                   data_offsets => [length $data, length($data) + length $t->{$n}{bytes}] };
        $data .= $t->{$n}{bytes};
    }
    my $js = JSON::PP->new->canonical->encode(\%h);
    $js .= ' ' x ((8 - length($js) % 8) % 8);
    return write_file($path, pack('V V', length $js, 0) . $js . $data);
}

# The tensors of $single in two shards (alternating) and an index naming them, in $folder.
sub shard_folder {
    my ($single, $folder, %o) = @_;
    make_path($folder);
    my ($t, $order) = read_st($single);
    my @files = ('model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors');
    my (@part, %map);
    for my $i (0 .. $#$order) {
        push @{ $part[$i % 2] }, $order->[$i];
        $map{ $order->[$i] } = $files[$i % 2];
    }
    write_st("$folder/$files[$_]", $t, @{ $part[$_] }) for 0, 1;
    my $index = { metadata => { total_size => 0 }, weight_map => \%map };
    write_file("$folder/model.safetensors.index.json",
               JSON::PP->new->canonical->encode($index));
    return ($t, \%map, \@files);
}

my $bytes_of = sub { $_[0] eq 'F32' ? 4 : 2 };

# The columns c0 .. c0+n-1 of a [rows, cols] tensor, transposed: [n, rows].
sub cols_transposed {
    my ($t, $c0, $n) = @_;
    my ($rows, $cols) = @{ $t->{shape} };
    my $es = $bytes_of->($t->{dtype});
    my $out = '';
    for my $j ($c0 .. $c0 + $n - 1) {
        $out .= substr($t->{bytes}, ($_ * $cols + $j) * $es, $es) for 0 .. $rows - 1;
    }
    return { dtype => $t->{dtype}, shape => [$n, $rows], bytes => $out };
}

sub vector_slice {
    my ($t, $b, $n) = @_;
    my $es = $bytes_of->($t->{dtype});
    return { dtype => $t->{dtype}, shape => [$n], bytes => substr($t->{bytes}, $b * $es, $n * $es) };
}

# A GPT-2 checkpoint of the real layout rewritten as tests/hf/gpt2-split.kiln reads it.
sub gpt2_split {
    my ($in, $out, $dim) = @_;
    my ($t) = read_st($in);
    my %s;
    for my $name (keys %$t) {
        my $v = $t->{$name};
        if ($name =~ /^(.*)\.attn\.c_attn\.(weight|bias)$/) {
            for my $k (0 .. 2) {
                my $to = "$1.attn." . (qw(q k v))[$k] . "_proj.$2";
                $s{$to} = $2 eq 'weight' ? cols_transposed($v, $k * $dim, $dim)
                                         : vector_slice($v, $k * $dim, $dim);
            }
        } elsif ($name =~ /\.(?:c_proj|c_fc)\.weight$/) {
            $s{$name} = cols_transposed($v, 0, $v->{shape}[1]);
        } else {
            $s{$name} = $v;
        }
    }
    return write_st($out, \%s, sort keys %s);
}

sub logits_of {
    my ($prog, $tokens, $label) = @_;
    my $lf = "$prog.logits";
    my $r = run_cmd($prog, '--tokens', $tokens, '--logits', $lf);
    ok($r->{rc} == 0 && !$r->{sig} && -s $lf, "$label: teacher-forced run") or diag(Golden::how($r));
    return slurp($lf) // '';
}

# The storage column of --report's weights table: { group => storage }.
sub report_storage {
    my ($text) = @_;
    my %s;
    my $in = 0;
    for (split /\n/, $text) {
        $in = 1, next if /^weights \(as packed/;
        last if $in && /^\s*$/;
        $s{$1} = $2 if $in && /^\s+(\S+)\s+\d+\s+(\S+)\s+\d+/ && $1 ne 'group' && $1 ne 'total';
    }
    return \%s;
}

# ---------------------------------------------------------------- a LLaMA folder, sharded

my %p = (dim => 32, hidden => 48, layers => 2, heads => 4, kv_heads => 2, vocab => 61, ctx => 24);
my @defs = map { ('-D', "$_=$p{$_}") } sort keys %p;
my $single = "$dir/llama.safetensors";
my $r = run_cmd($kiln, 'weights', 'examples/llama.kiln', @defs, '--seed', 7, '--dtype', 'bf16',
                '-o', $single);
ok($r->{rc} == 0 && -s $single, 'kiln weights --dtype bf16') or diag(Golden::how($r));
my $config = JSON::PP->new->canonical->encode({
    architectures => ['LlamaForCausalLM'], model_type => 'llama', torch_dtype => 'bfloat16',
    hidden_size => $p{dim}, intermediate_size => $p{hidden}, num_hidden_layers => $p{layers},
    num_attention_heads => $p{heads}, num_key_value_heads => $p{kv_heads},
    vocab_size => $p{vocab}, max_position_embeddings => $p{ctx}, rms_norm_eps => 1e-5,
    rope_theta => 10000.0, tie_word_embeddings => JSON::PP::true, hidden_act => 'silu' });
my $hf = "$dir/llama-hf";
my ($tensors, $map, $files) = shard_folder($single, $hf);
write_file("$hf/config.json", $config);
ok(scalar(grep { $map->{$_} eq $files->[0] } keys %$map) > 0 &&
   scalar(grep { $map->{$_} eq $files->[1] } keys %$map) > 0, 'the tensors lie in two shards');

$r = run_cmd($kiln, 'inspect', $hf);
like($r->{out}, qr/^\Q$hf\E: safetensors, \d+ tensors in 2 shards$/m, 'inspect DIR: the shards');
unlike($r->{out}, qr/tokenizer/, 'no tokenizer.json: none noted');
write_file("$hf/tokenizer.json", '{"model": {"type": "BPE"}}');
$r = run_cmd($kiln, 'inspect', $hf);
like($r->{out}, qr/^  tokenizer \Q$hf\E\/tokenizer\.json$/m, 'inspect DIR: tokenizer.json is noted');
unlink "$hf/tokenizer.json";   # a build would read it (text.t): this one is no tokenizer
# the commands without a checkpoint take the folder's config.json too
$r = run_cmd($kiln, 'dump', 'examples/llama.kiln', '--weights', $hf);
ok($r->{rc} == 0 && $r->{out} =~ /^param dim = $p{dim}$/m && $r->{out} =~ /^param vocab = $p{vocab}$/m,
   'dump --weights DIR: the parameters of config.json') or diag(Golden::how($r));

my $tokens = '1,7,3,60,12,5,9';
my $p1 = "$dir/llama-single";
$r = run_cmd($kiln, 'build', 'examples/llama.kiln', '--weights', $single, @defs, '-o', $p1);
ok($r->{rc} == 0 && -x $p1, 'build from the file with -D') or diag(Golden::how($r));
my $p2 = "$dir/llama-dir";
$r = run_cmd($kiln, 'build', 'examples/llama.kiln', '--weights', $hf, '-o', $p2, '--report');
ok($r->{rc} == 0 && -x $p2, 'build from the sharded folder, no -D') or diag(Golden::how($r));
my $storage = report_storage($r->{out});
ok(%$storage && !grep({ $_ ne 'bf16' } values %$storage),
   'the blob holds bf16 weights (' . join(', ', map { "$_ $storage->{$_}" } sort keys %$storage) . ')')
    or diag($r->{out});
my $want = logits_of($p1, $tokens, 'single file');
my $got = logits_of($p2, $tokens, 'folder');
ok($want ne '' && $got eq $want, 'the folder gives the logits of the single file, bit for bit');

# one model.safetensors in a folder
my $hf1 = "$dir/llama-one";
make_path($hf1);
write_file("$hf1/model.safetensors", slurp($single));
write_file("$hf1/config.json", $config);
my $p3 = "$dir/llama-one.prog";
$r = run_cmd($kiln, 'build', 'examples/llama.kiln', '--weights', $hf1, '-o', $p3);
ok($r->{rc} == 0 && -x $p3, 'build from a folder with model.safetensors') or diag(Golden::how($r));
is(logits_of($p3, $tokens, 'one-file folder'), $want, 'the same logits');

# -D wins over config.json: a context of 4 refuses a prompt of 7 tokens
my $p4 = "$dir/llama-ctx4";
$r = run_cmd($kiln, 'build', 'examples/llama.kiln', '--weights', $hf, '-D', 'ctx=4', '-o', $p4);
ok($r->{rc} == 0 && -x $p4, 'build from the folder with -D ctx=4') or diag(Golden::how($r));
$r = run_cmd($p4, '--tokens', $tokens, '--logits', "$p4.logits");
ok($r->{rc} != 0 && !$r->{sig} && $r->{err} =~ /\b4\b/, '-D ctx=4 wins over max_position_embeddings')
    or diag(Golden::how($r));
# --config wins over config.json
my $other = write_file("$dir/other.json", JSON::PP->new->encode({ hidden_size => 40 }));
fails_cleanly(run_cmd($kiln, 'build', 'examples/llama.kiln', '--weights', $hf, '--config', $other,
                      '-D', 'heads=4', '-D', 'kv_heads=2', '-D', "hidden=$p{hidden}",
                      '-D', 'layers=2', '-D', "vocab=$p{vocab}", '-o', "$dir/other.prog"),
              qr/error: weight 'embed' is \[$p{vocab}, 40\] in the spec, but "model\.embed_tokens\.weight" is \[$p{vocab}, $p{dim}\]/,
              "$dir/other.prog",
              '--config wins over the folder\'s config.json (hidden_size 40: the shapes differ)');

# ---------------------------------------------------------------- hostile folders

# A copy of the good folder, changed by $edit (which gets the folder's path).
my $n = 0;
sub hostile {
    my ($label, $edit, $pattern) = @_;
    my $h = "$dir/hostile-" . ++$n;
    shard_folder($single, $h);
    write_file("$h/config.json", $config);
    $edit->($h);
    my $out = "$h.prog";
    fails_cleanly(run_cmd($kiln, 'build', 'examples/llama.kiln', '--weights', $h, '-o', $out),
                  $pattern->($h), $out, "hostile folder: $label");
}
my $index_of = sub { JSON::PP::decode_json(slurp("$_[0]/model.safetensors.index.json")) };
my $set_index = sub { write_file("$_[0]/model.safetensors.index.json", JSON::PP->new->canonical->encode($_[1])) };
hostile('a shard missing', sub { unlink "$_[0]/$files->[1]" },
        sub { qr/^\Q$_[0]\E\/\Q$files->[1]\E: error: cannot open: No such file/m });
hostile('the index names a tensor its shard does not hold', sub {
            my $ix = $index_of->($_[0]);
            $ix->{weight_map}{'model.norm.weight'} = $ix->{weight_map}{'model.norm.weight'} eq $files->[0]
                                                   ? $files->[1] : $files->[0];
            $set_index->($_[0], $ix) },
        sub { qr/^\Q$_[0]\E\/model\.safetensors\.index\.json: error: weight_map: tensor 'model\.norm\.weight' is mapped to "model-0000\d-of-00002\.safetensors", but \Q$_[0]\E\/model-0000\d-of-00002\.safetensors does not hold it/m });
hostile('a shard path with ../', sub {
            my $ix = $index_of->($_[0]);
            $ix->{weight_map}{'model.norm.weight'} = "../llama-hf/$files->[0]";
            $set_index->($_[0], $ix) },
        sub { qr/^\Q$_[0]\E\/model\.safetensors\.index\.json: error: weight_map: tensor 'model\.norm\.weight' is in "\.\.\/llama-hf\/[^"]+", which leaves the folder/m });
hostile('an absolute shard path', sub {
            my $ix = $index_of->($_[0]);
            $ix->{weight_map}{'model.norm.weight'} = "$hf/$files->[0]";
            $set_index->($_[0], $ix) },
        sub { qr/^\Q$_[0]\E\/model\.safetensors\.index\.json: error: .*which is an absolute path/m });
hostile('malformed index JSON', sub { write_file("$_[0]/model.safetensors.index.json", '{"weight_map": {"a": ') },
        sub { qr/^\Q$_[0]\E\/model\.safetensors\.index\.json: error: line 1, column \d+: /m });
hostile('an index without weight_map', sub { write_file("$_[0]/model.safetensors.index.json", '{"metadata": {}}') },
        sub { qr/^\Q$_[0]\E\/model\.safetensors\.index\.json: error: .*"weight_map"/m });
hostile('config.json missing', sub { unlink "$_[0]/config.json" },
        sub { qr/^\Q$_[0]\E\/config\.json: error: .*(?:unable to open|No such file)/m });
hostile('a damaged shard', sub {
            my $f = "$_[0]/$files->[0]";
            my $s = slurp($f);
            write_file($f, substr($s, 0, length($s) - 10)) },
        sub { qr/^\Q$_[0]\E\/\Q$files->[0]\E: error: tensor '[^']+': data_offsets .* end past the data section/m });
hostile('neither model.safetensors nor an index', sub { unlink "$_[0]/model.safetensors.index.json" },
        sub { qr/^\Q$_[0]\E: error: a Hugging Face folder holds model\.safetensors or model\.safetensors\.index\.json/m });

# ---------------------------------------------------------------- GPT-2 as stored

my %g = (dim => 32, heads => 2, hidden => 64, layers => 2, vocab => 53, ctx => 16);
my @gdefs = map { ('-D', "$_=$g{$_}") } sort keys %g;
my $gtok = '1,5,9,44,2,17,30,8';
for my $dtype ('f32', 'bf16') {
    my $fused = "$dir/gpt2-$dtype.safetensors";
    $r = run_cmd($kiln, 'weights', 'examples/gpt2.kiln', @gdefs, '--seed', 3, '--dtype', $dtype,
                 '-o', $fused);
    ok($r->{rc} == 0 && -s $fused, "gpt2 $dtype: kiln weights") or diag(Golden::how($r));
    my ($t) = read_st($fused);
    my $ca = $t->{'transformer.h.1.attn.c_attn.weight'};
    ok($ca && "@{ $ca->{shape} }" eq "$g{dim} " . 3 * $g{dim} &&
       "@{ $t->{'transformer.h.0.mlp.c_fc.weight'}{shape} }" eq "$g{dim} $g{hidden}" &&
       "@{ $t->{'transformer.h.0.mlp.c_proj.weight'}{shape} }" eq "$g{hidden} $g{dim}" &&
       "@{ $t->{'transformer.h.0.attn.c_attn.bias'}{shape} }" eq 3 * $g{dim} &&
       !grep({ /q_proj|k_proj|v_proj/ } keys %$t),
       "gpt2 $dtype: the checkpoint holds the Hugging Face names and [in, out] shapes");
    my $split = gpt2_split($fused, "$dir/gpt2-$dtype-split.safetensors", $g{dim});
    my ($pf, $ps) = ("$dir/gpt2-$dtype-fused", "$dir/gpt2-$dtype-split");
    $r = run_cmd($kiln, 'build', 'examples/gpt2.kiln', '--weights', $fused, @gdefs, '-o', $pf,
                 '--report');
    ok($r->{rc} == 0 && -x $pf, "gpt2 $dtype: build from the stored layout") or diag(Golden::how($r));
    my $st = report_storage($r->{out});
    ok(%$st && !grep({ $_ ne $dtype } values %$st),
       "gpt2 $dtype: transposed and sliced weights keep their type ("
       . join(', ', map { "$_ $st->{$_}" } sort keys %$st) . ')') or diag($r->{out});
    $r = run_cmd($kiln, 'build', 'tests/hf/gpt2-split.kiln', '--weights', $split, @gdefs, '-o', $ps);
    ok($r->{rc} == 0 && -x $ps, "gpt2 $dtype: build of the split layout") or diag(Golden::how($r));
    my $a = logits_of($pf, $gtok, "gpt2 $dtype fused");
    my $b = logits_of($ps, $gtok, "gpt2 $dtype split");
    ok($a ne '' && $a eq $b, "gpt2 $dtype: the stored layout gives the split layout's logits, bit for bit");
}
# a GPT-2 folder with GPT2Config's names builds without -D
{
    my %c = (n_embd => 32, n_head => 2, n_layer => 2, n_positions => 16, vocab_size => 53);
    my @d = ('-D', 'dim=32', '-D', 'heads=2', '-D', 'layers=2', '-D', 'ctx=16', '-D', 'vocab=53');
    my $gd = "$dir/gpt2-hf";
    make_path($gd);
    $r = run_cmd($kiln, 'weights', 'examples/gpt2.kiln', @d, '--seed', 5, '-o', "$gd/model.safetensors");
    ok($r->{rc} == 0, 'gpt2 folder: kiln weights') or diag(Golden::how($r));
    write_file("$gd/config.json", JSON::PP->new->canonical->encode({
        %c, architectures => ['GPT2LMHeadModel'], model_type => 'gpt2', n_inner => undef,
        n_ctx => 16, layer_norm_epsilon => 1e-5, activation_function => 'gelu_new',
        scale_attn_weights => JSON::PP::true, scale_attn_by_inverse_layer_idx => JSON::PP::false,
        bos_token_id => 50256, eos_token_id => 50256 }));
    $r = run_cmd($kiln, 'build', 'examples/gpt2.kiln', '--weights', $gd, '-o', "$gd.prog");
    ok($r->{rc} == 0 && -x "$gd.prog", 'gpt2 folder: build without -D') or diag(Golden::how($r));
    $r = run_cmd($kiln, 'build', 'examples/gpt2.kiln', '--weights', "$gd/model.safetensors", @d,
                 '-o', "$gd-d.prog");
    ok($r->{rc} == 0 && -x "$gd-d.prog", 'gpt2 folder: the file with -D') or diag(Golden::how($r));
    my $a = logits_of("$gd.prog", $gtok, 'gpt2 folder');
    ok($a ne '' && $a eq logits_of("$gd-d.prog", $gtok, 'gpt2 file'), 'gpt2 folder: the same logits');
}
fails_cleanly(run_cmd($kiln, 'build', 'examples/gpt2.kiln', '--weights',
                      "$dir/gpt2-f32-split.safetensors", @gdefs, '-o', "$dir/gpt2-wrong"),
              qr/^examples\/gpt2\.kiln:\d+:\d+: error: weight 'wq\[0\]' is bound to a view of "transformer\.h\.0\.attn\.c_attn\.weight", which \S+ does not have/m,
              "$dir/gpt2-wrong", 'a view of a tensor the checkpoint lacks: the declaration and the file');

# ---------------------------------------------------------------- views of block weights

(my $llama = slurp('examples/llama.kiln')) =~
    s/(wo \[dim, heads \* head_dim\]\s*=\s*)"(model\.layers\.\{l\}\.self_attn\.o_proj\.weight)"/${1}transpose("$2")/
    or die 'examples/llama.kiln: no wo line';
my $tspec = write_file("$dir/llama-wo-t.kiln", $llama);
my @qdefs = ('-D', 'dim=64', '-D', 'heads=4', '-D', 'kv_heads=2', '-D', 'hidden=64', '-D', 'layers=1',
             '-D', 'vocab=40', '-D', 'ctx=16');
my $q8 = "$dir/llama-q8.gguf";
$r = run_cmd($kiln, 'weights', $tspec, @qdefs, '--format', 'gguf', '--dtype', 'q8_0', '-o', $q8);
ok($r->{rc} == 0 && -s $q8, 'q8_0 GGUF weights for a spec with a transposed wo') or diag(Golden::how($r));
fails_cleanly(run_cmd($kiln, 'build', $tspec, '--weights', $q8, @qdefs, '-o', "$dir/q8-t"),
              qr/^\Q$tspec\E:\d+:\d+: error: weight 'wo\[0\]' views "model\.layers\.0\.self_attn\.o_proj\.weight" \(Q8_0 in \Q$q8\E\) transposed: its blocks of 32 cannot be kept; --wtype f32/m,
              "$dir/q8-t", 'a transposed view of Q8_0 weights is refused');
$r = run_cmd($kiln, 'build', $tspec, '--weights', $q8, @qdefs, '--wtype', 'f32', '-o', "$dir/q8-f32");
ok($r->{rc} == 0 && -x "$dir/q8-f32", '--wtype f32 dequantizes it') or diag(Golden::how($r));

done_testing();
