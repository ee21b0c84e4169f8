#!/usr/bin/perl
# mkcorpus.pl - (re)writes the fuzz targets' seed corpora, tests/fuzz/corpus/TARGET/, from the
# examples and from tiny files written by build/kiln (run `ninja` first). Each seed is a
# small valid input, so that the fuzzer starts deep inside each reader. Run from the
# repository root; the files are committed, so this is only needed to change them.
use strict;
use warnings;
use File::Path qw(make_path remove_tree);
use File::Copy qw(copy);
use File::Temp qw(tempdir);

my $kiln = $ENV{KILN} // 'build/kiln';
my $c = 'tests/fuzz/corpus';
my $tmp = tempdir('kiln-mkcorpus-XXXXXX', TMPDIR => 1, CLEANUP => 1);

sub put {
    my ($path, $bytes) = @_;
    open my $f, '>:raw', $path or die "$path: $!";
    print $f $bytes;
    close $f or die "$path: $!";
}
sub slurp { open my $f, "<:raw", $_[0] or die "$_[0]: $!"; local $/; <$f> }
sub run { system(@_) == 0 or die "failed: @_\n" }

remove_tree($c);
make_path(map { "$c/$_" } qw(spec ir_read safetensors gguf llama2c tokenizer_bin
                             tokenizer_json ktok blob prog_args kiln_args));

# spec: the examples and the every-op spec
copy($_, "$c/spec/") or die for glob('examples/*.kiln'), 'tests/ops/allops.kiln';

# ir_read: dumps of one-layer models, before and after the passes
my @tiny = ('-D', 'layers=1');
for my $ex (qw(llama dsmoe finedeep uniattn)) {
    run("$kiln dump examples/$ex.kiln @tiny > $c/ir_read/$ex.ir");
    run("$kiln dump examples/$ex.kiln @tiny --before widen > $c/ir_read/$ex-front.ir");
}

# checkpoints: det-weights of llama shapes small enough to fuzz
my @small = qw(-D dim=32 -D hidden=32 -D layers=1 -D heads=2 -D kv_heads=1 -D vocab=8 -D ctx=8);
run($kiln, 'weights', 'examples/llama.kiln', '--seed', 1, @small, '-o', "$c/safetensors/f32.safetensors");
run($kiln, 'weights', 'examples/llama.kiln', '--seed', 2, @small, '--dtype', 'bf16', '-o',
    "$c/safetensors/bf16.safetensors");
run($kiln, 'weights', 'examples/llama.kiln', '--seed', 1, @small, '--format', 'gguf', '-o',
    "$c/gguf/f32.gguf");
run($kiln, 'weights', 'examples/llama.kiln', '--seed', 1, @small, '--format', 'gguf',
    '--dtype', 'q8_0', '-o', "$c/gguf/q8_0.gguf");
run($kiln, 'weights', 'examples/llama.kiln', '--seed', 1, @small, '--format', 'gguf',
    '--dtype', 'q4_0', '-o', "$c/gguf/q4_0.gguf");
run($kiln, 'weights', 'examples/llama2c.kiln', '--seed', 1, qw(-D dim=8 -D hidden=8 -D layers=1
    -D heads=2 -D kv_heads=2 -D vocab=8 -D ctx=4), '--format', 'llama2c', '-o', "$c/llama2c/tiny.bin");

# a GGUF with a vocabulary: the llama.* keys, tokenizer.ggml.*, one tensor (token_embd)
sub gstr { pack('Q<', length $_[0]) . $_[0] }
my @tokens = ('<unk>', '<s>', '</s>', '<0x41>', "\xe2\x96\x81", 'a', 'b', "\xe2\x96\x81ab");
my @kv = (
    gstr('general.architecture') . pack('L<', 8) . gstr('llama'),
    gstr('general.alignment') . pack('L<L<', 4, 32),
    gstr('llama.embedding_length') . pack('L<L<', 4, 4),
    gstr('llama.block_count') . pack('L<L<', 4, 1),
    gstr('llama.attention.head_count') . pack('L<L<', 4, 2),
    gstr('llama.feed_forward_length') . pack('L<L<', 4, 8),
    gstr('llama.context_length') . pack('L<L<', 4, 16),
    gstr('llama.attention.layer_norm_rms_epsilon') . pack('L<f<', 6, 1e-5),
    gstr('tokenizer.ggml.model') . pack('L<', 8) . gstr('llama'),
    gstr('tokenizer.ggml.tokens') . pack('L<L<Q<', 9, 8, scalar @tokens) . join('', map { gstr($_) } @tokens),
    gstr('tokenizer.ggml.scores') . pack('L<L<Q<', 9, 6, 8) . pack('f<*', 0, 0, 0, 0, -1, -2, -3, -0.5),
    gstr('tokenizer.ggml.token_type') . pack('L<L<Q<', 9, 5, 8) . pack('l<*', 2, 3, 3, 6, 1, 1, 1, 1),
    gstr('tokenizer.ggml.bos_token_id') . pack('L<L<', 4, 1),
    gstr('tokenizer.ggml.eos_token_id') . pack('L<L<', 4, 2),
);
my $ti = gstr('token_embd.weight') . pack('L<Q<Q<L<Q<', 2, 4, 8, 0, 0);
my $head = 'GGUF' . pack('L<Q<Q<', 3, 1, scalar @kv) . join('', @kv) . $ti;
$head .= "\0" x ((32 - length($head) % 32) % 32);
put("$c/gguf/vocab.gguf", $head . pack('f<*', map { $_ / 64 } 0 .. 31));

# tokenizers: llama2.c's 512-token file and one of 5; two tokenizer.json forms
copy('examples/models/tok512.bin', "$c/tokenizer_bin/") or die;
put("$c/tokenizer_bin/tok5.bin", pack('L<', 3) . join('', map { pack('f<L<', -$_, length $tokens[$_]) .
    $tokens[$_] } 0 .. 4));
my @b2u;           # GPT-2's printable form of each byte
my $n = 0;
for my $b (0 .. 255) {
    my $printable = ($b >= 33 && $b <= 126) || ($b >= 161 && $b <= 172) || $b >= 174;
    $b2u[$b] = $printable ? chr($b) : chr(256 + $n++);
}
my $u = sub { my $s = ''; utf8::encode(my $x = join '', map { $b2u[ord] } split //, $_[0]); $x };
my @extra = (' t', 'he', ' the', 'ce', ' c');
my $vocab = join(', ', (map { my $k = $b2u[$_]; utf8::encode($k); $k =~ s/(["\\])/\\$1/g;
                             "\"$k\": $_" } 0 .. 255),
                 map { '"' . $u->($extra[$_]) . '": ' . (256 + $_) } 0 .. $#extra);
put("$c/tokenizer_json/bytelevel.json", '{"version": "1.0", "added_tokens": [{"id": 261, '
    . '"content": "<|endoftext|>", "special": true}], "normalizer": null, "pre_tokenizer": '
    . '{"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}, "model": {"type": '
    . '"BPE", "ignore_merges": false, "vocab": {' . $vocab . ', "<|endoftext|>": 261}, '
    . '"merges": ["' . $u->(' ') . ' t", "h e", "' . $u->(' t') . ' he", "c e", "'
    . $u->(' ') . ' c"]}}' . "\n");
my $sp = "\xe2\x96\x81";
put("$c/tokenizer_json/sentencepiece.json", '{"added_tokens": [{"id": 0, "content": "<unk>", '
    . '"special": true}, {"id": 1, "content": "<s>", "special": true}, {"id": 2, "content": '
    . '"</s>", "special": true}], "normalizer": {"type": "Sequence", "normalizers": [{"type": '
    . "\"Prepend\", \"prepend\": \"$sp\"}, {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, "
    . "\"content\": \"$sp\"}]}, \"pre_tokenizer\": null, \"model\": {\"type\": \"BPE\", "
    . '"byte_fallback": true, "unk_token": "<unk>", "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, '
    . join(', ', map { sprintf('"<0x%02X>": %d', $_, 3 + $_) } 0 .. 255)
    . ", \"$sp\": 259, \"h\": 260, \"e\": 261, \"l\": 262, \"o\": 263, \"${sp}h\": 264, "
    . "\"ll\": 265}, \"merges\": [\"$sp h\", \"l l\"]}}\n");

# ktok: the serialized tokenizers a build stores, taken out of blobs kiln wrote
sub blob_entry {
    my ($blob, $want) = @_;
    my ($magic, $ver, $nt, $table) = unpack('a8 L< L< Q<', $blob);
    for my $i (0 .. $nt - 1) {
        my ($no, $off, $nb) = unpack('Q< Q< Q<', substr($blob, $table + $i * 72, 24));
        my $name = unpack('Z*', substr($blob, $no, 256));
        return substr($blob, $off, $nb) if $name eq $want;
    }
    die "no $want in the blob\n";
}
my @l2 = qw(-D dim=8 -D hidden=8 -D layers=1 -D heads=2 -D kv_heads=2 -D ctx=4);
my %ktok;
for my $t (["tok512", 'examples/models/tok512.bin', 512],
           ["bytelevel", "$c/tokenizer_json/bytelevel.json", 262],
           ["sentencepiece", "$c/tokenizer_json/sentencepiece.json", 266]) {
    my ($name, $file, $v) = @$t;
    run($kiln, 'weights', 'examples/llama2c.kiln', '--seed', 1, @l2, '-D', "vocab=$v", '-o', "$tmp/w.safetensors");
    run($kiln, 'build', 'examples/llama2c.kiln', @l2, '-D', "vocab=$v", '--weights', "$tmp/w.safetensors",
        '--tokenizer', $file, '--blob', "$tmp/$name.blob");
    $ktok{$name} = blob_entry(slurp("$tmp/$name.blob"), 'kiln.tokenizer');
    put("$c/ktok/$name.ktok", $ktok{$name});
}

# blob: tests/fuzz/fuzz_blob.c's model, one tensor of each type, and a tokenizer
my @bt = (['tok_embeddings', 0, [11, 6], 11 * 6 * 4, 0], ['output', 0, [11, 8], 11 * 8 * 4, 0],
          ['w_q8', 8, [2, 64], 2 * 2 * 34, 0], ['w_q4', 9, [3, 32], 3 * 18, 0],
          ['w_f16', 1, [4, 5], 4 * 5 * 2, 0], ['w_bf16', 2, [7], 7 * 2, 0],
          ['w_panel', 8, [20, 32], 20 * 34, 1],
          ['kiln.tokenizer', 16, [length $ktok{sentencepiece}], length $ktok{sentencepiece}, 0]);
my $names = join '', map { "$_->[0]\0" } @bt;
my $at = 24 + 72 * @bt;
my $data_at = $at + length $names;
$data_at += (64 - $data_at % 64) % 64;
my ($table, $data, $noff) = ('', '', $at);
for my $t (@bt) {
    my ($name, $dt, $dims, $nb, $layout) = @$t;
    my $bytes = $name eq 'kiln.tokenizer' ? $ktok{sentencepiece}
              : join '', map { chr(($_ * 7 + length $name) % 61) } 1 .. $nb;
    $table .= pack('Q<Q<Q<L<L<Q<Q<Q<Q<L<L<', $noff, $data_at + length $data, $nb, $dt, scalar @$dims,
                   (@$dims, 0, 0, 0, 0)[0 .. 3], $layout, 0);
    $noff += length($name) + 1;
    $data .= $bytes . "\0" x ((64 - $nb % 64) % 64);
}
my $pre = $table . $names;
$pre .= "\0" x ($data_at - 24 - length $pre);
my $total = $data_at + length $data;
put("$c/blob/fuzz.blob", pack('a8 L< L< Q< Q<', 'KILNBLOB', 4, scalar @bt, 24, $total) . $pre . $data);

# command lines, arguments separated by NUL bytes
my @prog = (['--tokens', '1,2,3', '-n', '4', '--temp', '0.8', '--top-k', '5', '--top-p', '0.9',
             '--seed', '7'],
            ['--prompt', 'Once', '--min-p=0.05', '--repeat-penalty', '1.1', '--repeat-last-n',
             '16', '--ignore-eos', '--threads', '2', '--batch', '2', '--ctx', '6'],
            ['--tokens=4,5', '--logits', 'l.txt', '--set', 'logit_scale=2', '--stats', '--bench',
             '--huge-pages', 'off', '--blob', 'w.blob'],
            ['--bench-pp', '4', '--bench-tg=2', '--bench-runs', '3'], ['-i'], ['--help']);
my @kiln = (['build', 'm.kiln', '--weights', 'w.gguf', '-o', 'p', '--wtype', 'q4_0', '--wtype-of',
             'embed=f16', '--act', 'f32', '--kv-type', 'bf16', '--max-batch', '8', '-D', 'dim=64',
             '--ctx', '32', '-v', '--tokenizer', 't.json'],
            ['build', 'm.kiln', '--weights', 'w', '--lib', '--embed-blob', '--name', 'mylib', '-o', 'd'],
            ['build', 'm.kiln', '--weights=w', '--blob', 'b', '--share-softmax=2,1,3', '--calib', 'c.txt'],
            ['dump', 'm.ir', '--after', 'cse', '--scope', 'l=1', '--dot', '-O0', '--disable-pass=cse,dce',
             '--dump-before=widen', '--dump-dir', 'dd', '--report', '-Werror'],
            ['build', 'm.kiln', '--weights', 'w', '-o', 'p', '--prune-experts=prof.json', '--min-freq',
             '0.1', '--keep-experts=0:1,2;1:0'],
            ['weights', 'm.kiln', '--seed', '3', '-o', 'w.gguf', '--format', 'gguf', '--dtype', 'q8_0',
             '--config', 'config.json'],
            ['check', 'm.kiln', '-D', 'layers=2', '-w'], ['emit-c', 'm.kiln', '-o', 'm.c', '--stop-after=codegen'],
            ['--list-passes'], ['inspect', 'w.gguf'], ['ops']);
my $i = 0;
put(sprintf("$c/prog_args/%02d.args", $i++), join "\0", @$_) for @prog;
$i = 0;
put(sprintf("$c/kiln_args/%02d.args", $i++), join "\0", @$_) for @kiln;
