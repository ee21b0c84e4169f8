#!/usr/bin/perl
# Text in, text out on a real model: stories260K (examples/models/, MIT) built three ways —
# the llama2.c .bin with --tokenizer tok512.bin, the F32 GGUF and the F16 GGUF with their
# embedded vocabulary — must print for `--prompt P -n N --temp 0` exactly what llama2.c's
# run.c printed (tests/golden/stories260K/, recorded with `run stories260K.bin -z tok512.bin
# -t 0 -n 200 -i P`; run.c's -n counts positions, BOS and the prompt included, so N = 201 -
# the prompt's tokens). F16 weights move the logits: its text is checked on the prompts
# where it keeps run.c's greedy path. Then: timings on stderr only, -i (the cache kept
# between lines, the context-full note), --ignore-eos, the C library's tokenizer, a Hugging
# Face folder's tokenizer.json, a program without a tokenizer, a damaged tokenizer and a
# damaged tokenizer entry in the blob, the usage errors, and the demo (examples/demo.sh).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp ();
use POSIX ();
use Golden qw(run_cmd slurp);

my $kiln = Golden::kiln();
my $dir  = Golden::tmpdir();
my $M    = 'examples/models';

# prompt, golden file, the prompt's token count with BOS (run.c's encode)
my @cases = (
    ['Once upon a time',  'once-upon-a-time.txt', 5],
    ['Lily had a red',    'lily-had-a-red.txt',   6],
    ['The dog',           'the-dog.txt',          4],   # the model starts a new text (BOS): stops early
    ["The caf\x{e9}  was big", 'the-cafe-was-big.txt', 9],  # a non-ASCII piece, two spaces
);
utf8::encode($_->[0]) for @cases;

my %progs = (
    bin => ['--weights', "$M/stories260K.bin", '--tokenizer', "$M/tok512.bin"],
    f32 => ['--weights', "$M/stories260K-f32.gguf"],   # hyperparameters from the metadata
    f16 => ['--weights', "$M/stories260K-f16.gguf"],
);
for my $k (sort keys %progs) {
    my $r = run_cmd($kiln, 'build', 'examples/llama2c.kiln', @{ $progs{$k} }, '-o', "$dir/$k");
    ok($r->{rc} == 0 && -x "$dir/$k", "build stories260K ($k)") or BAIL_OUT(Golden::how($r));
}

for my $k (qw(bin f32 f16)) {
    for my $c (@cases) {
        my ($prompt, $file, $n_prompt) = @$c;
        next if $k eq 'f16' && $file eq 'the-cafe-was-big.txt';   # f16 leaves run.c's path
        my $want = slurp("tests/golden/stories260K/$file");
        my $r = run_cmd("$dir/$k", '--prompt', $prompt, '-n', 201 - $n_prompt, '--temp', 0);
        ok($r->{rc} == 0, "$k: --prompt '$prompt' runs") or diag(Golden::how($r));
        is($r->{out}, $want, "$k: '$prompt' prints run.c's text, byte for byte");
        like($r->{err}, qr/prompt eval time = +[\d.]+ ms \/ +$n_prompt tokens .*tokens per second\)\n.*eval time = +[\d.]+ ms \/ +\d+ runs/s,
             "$k: timings on stderr ($n_prompt prompt tokens)");
    }
}
my $bin = "$dir/bin";

# the timings never reach stdout, and generation is streamed: -n 3 prints a prefix
my ($p0, $f0, $n0) = @{ $cases[0] };
my $gold0 = slurp("tests/golden/stories260K/$f0");
my $r = run_cmd($bin, '--prompt', $p0, '-n', 3, '--temp', 0);
ok($r->{rc} == 0 && $r->{out} !~ /eval time|tokens per second/, 'nothing but text on stdout');
ok(length($r->{out}) > length($p0) + 1 && substr($gold0, 0, length($r->{out}) - 1) . "\n" eq $r->{out},
   '-n 3: the first three tokens of the same text, then a newline') or diag($r->{out});

# --ignore-eos: "The dog" goes on past the BOS where run.c stopped
my ($pd, $fd, $nd) = @{ $cases[2] };
my $gold_dog = slurp("tests/golden/stories260K/$fd");
$r = run_cmd($bin, '--prompt', $pd, '-n', 250, '--temp', 0, '--ignore-eos');
ok($r->{rc} == 0 && length($r->{out}) > length($gold_dog)
   && substr($r->{out}, 0, length($gold_dog) - 1) eq substr($gold_dog, 0, -1),
   '--ignore-eos: the same text, then more after the end-of-generation token');
$r = run_cmd($bin, '--prompt', $pd, '-n', 250, '--temp', 0);
is($r->{out}, $gold_dog, 'without it, -n 250 still stops where run.c stopped');

# -i: lines of standard input, the KV cache kept between them
sub run_stdin {
    my ($input, @cmd) = @_;
    my ($fh, $in) = File::Temp::tempfile('kiln-in-XXXXXX', DIR => $dir);
    print $fh $input;
    close $fh;
    my ($ofh, $out) = File::Temp::tempfile('kiln-out-XXXXXX', DIR => $dir);
    my ($efh, $err) = File::Temp::tempfile('kiln-err-XXXXXX', DIR => $dir);
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open STDIN, '<', $in or POSIX::_exit(126);
        open STDOUT, '>&', $ofh or POSIX::_exit(126);
        open STDERR, '>&', $efh or POSIX::_exit(126);
        { no warnings 'exec'; exec { $cmd[0] } @cmd; }
        POSIX::_exit(127);
    }
    waitpid $pid, 0;
    return {rc => $? >> 8, sig => $? & 127, out => slurp($out), err => slurp($err),
            cmd => join(' ', @cmd), timed_out => 0};
}
$r = run_stdin("$p0\n", $bin, '-i', '-n', 201 - $n0, '--temp', 0);
is($r->{out}, substr($gold0, length($p0)), '-i: a line is answered as --prompt would (the line itself not echoed)');
$r = run_stdin("$p0\n$pd\n", $bin, '-i', '-n', 20, '--temp', 0);
my @turns = split /\n/, $r->{out}, -1;
my $alone = run_stdin("$pd\n", $bin, '-i', '-n', 20, '--temp', 0);
ok($r->{rc} == 0 && @turns == 3 && $turns[2] eq '' && length $turns[1], '-i: two lines, two answers')
    or diag(Golden::how($r));
isnt($turns[1], (split /\n/, $alone->{out})[0],
     "-i: the second line continues the first (the cache is kept), unlike '$pd' alone");
like($r->{err}, qr/prompt eval time = .* \/ +\d+ tokens/, '-i: timings at the end');
$r = run_stdin("$pd\n", $bin, '-i', '--prompt', $p0, '-n', 20, '--temp', 0);
is($r->{out}, join("\n", @turns[0, 1], ''), '-i --prompt: the prompt is the first line');
$r = run_stdin("$p0\n$p0\n$p0\n", $bin, '-i', '-n', 8, '--temp', 0, '--ctx', 20);
ok($r->{rc} == 0 && $r->{err} =~ /note: the context of 20 positions is full/,
   '-i --ctx 20: a note when the context is full, exit 0') or diag(Golden::how($r));

# the C library (kiln build --lib) carries the tokenizer too: examples/embed.c encodes the
# prompt and prints 16 greedy tokens as text, the text the program prints
{
    my $cc = $ENV{CC} // 'cc';
    $r = run_cmd($kiln, 'build', 'examples/llama2c.kiln', @{ $progs{bin} }, '--lib', '--name',
                 'llama', '-o', "$dir/lib");
    ok($r->{rc} == 0, 'kiln build --lib with --tokenizer') or diag(Golden::how($r));
    # the header's link line, with this kiln's extra flags (the sanitizers of an ASan kiln)
    my ($link) = (slurp("$dir/lib/llama.h") // '') =~ /^ \*   link:  cc app\.c -IDIR DIR\/libllama\.a -lm -lpthread(.*)$/m;
    $r = run_cmd($cc, '-std=c11', '-O1', 'examples/embed.c', "-I$dir/lib", "$dir/lib/libllama.a",
                 '-lm', '-lpthread', split(' ', $link // ''), '-o', "$dir/embed");
    ok($r->{rc} == 0, 'examples/embed.c links with it') or diag(Golden::how($r));
    $r = run_cmd("$dir/embed", "$dir/lib/llama.kblob", $p0);
    my $want = run_cmd($bin, '--prompt', $p0, '-n', 16, '--temp', 0);
    ok($r->{rc} == 0 && length $r->{out} > 20 && $r->{out} eq substr($want->{out}, length $p0),
       "the library encodes, generates and decodes what the program prints") or diag(Golden::how($r));
}

# a Hugging Face folder's tokenizer.json is the program's tokenizer (--tokenizer none: no
# tokenizer): llama.kiln's det-weights (vocab 257), its config.json and a byte-level
# tokenizer.json of the 256 bytes (GPT-2's alphabet) and one merge, "h" + "i"
{
    require JSON::PP;
    my $hf = "$dir/hf";
    mkdir $hf or die;
    $r = run_cmd($kiln, 'weights', 'examples/llama.kiln', '-D', 'vocab=257', '--seed', 1, '-o',
                 "$hf/model.safetensors");
    ok($r->{rc} == 0, 'det-weights for a folder') or diag(Golden::how($r));
    my $json = JSON::PP->new->canonical;
    my %config = (hidden_size => 64, intermediate_size => 176, num_hidden_layers => 4,
                  num_attention_heads => 4, num_key_value_heads => 2, vocab_size => 257,
                  max_position_embeddings => 128, rms_norm_eps => 1e-5, rope_theta => 10000.0,
                  tie_word_embeddings => JSON::PP::true(), hidden_act => 'silu');
    my @printable = (33 .. 126, 161 .. 172, 174 .. 255);
    my %is = map { $_ => 1 } @printable;
    my ($k, %char) = (0);
    $char{$_} = chr($is{$_} ? $_ : 256 + $k++) for 0 .. 255;
    my %vocab = map { ($char{$_} => $_) } 0 .. 255;
    $vocab{'hi'} = 256;
    my %tok = (model => {type => 'BPE', vocab => \%vocab, merges => ['h i']},
               pre_tokenizer => {type => 'ByteLevel', use_regex => JSON::PP::true()},
               added_tokens => []);
    for (["$hf/config.json", \%config], ["$hf/tokenizer.json", \%tok]) {
        open my $fh, '>:raw', $_->[0] or die;
        print $fh $json->utf8->encode($_->[1]);
        close $fh;
    }
    $r = run_cmd($kiln, 'build', 'examples/llama.kiln', '--weights', $hf, '-o', "$dir/hfprog", '-v');
    ok($r->{rc} == 0 && $r->{err} =~ /tokenizer from \Q$hf\E\/tokenizer\.json: tokenizer\.json byte-level BPE, 257 tokens, 1 merges/,
       "build --weights DIR takes DIR/tokenizer.json") or diag(Golden::how($r));
    $r = run_cmd("$dir/hfprog", '--prompt', 'hi there', '-n', 3, '--temp', 0);
    ok($r->{rc} == 0 && $r->{out} =~ /^hi there/ && $r->{err} =~ /prompt eval time = .* \/ +7 tokens/,
       'its program encodes text: "hi there" is 7 tokens (hi merged)') or diag(Golden::how($r));
    $r = run_cmd($kiln, 'build', 'examples/llama.kiln', '--weights', $hf, '--tokenizer', 'none',
                 '-o', "$dir/hfbare");
    my $bare = run_cmd("$dir/hfbare", '--prompt', 'hi');
    ok($r->{rc} == 0 && $bare->{rc} == 2 && $bare->{err} =~ /no tokenizer/,
       '--tokenizer none: a program without one') or diag(Golden::how($bare));
}

# a program without a tokenizer takes token ids only
my $bare = "$dir/bare";
$r = run_cmd($kiln, 'build', 'examples/llama2c.kiln', '--weights', "$M/stories260K.bin", '-o', $bare);
ok($r->{rc} == 0, 'build without --tokenizer') or diag(Golden::how($r));
$r = run_cmd($bare, '--prompt', 'Hello');
ok($r->{rc} == 2 && $r->{err} =~ /has no tokenizer.*--tokenizer/ && $r->{out} eq '',
   'no tokenizer: --prompt says to rebuild with --tokenizer, exit 2, no output')
    or diag(Golden::how($r));
$r = run_cmd($bare, '--tokens', '1,403,407,261,378', '-n', 4, '--temp', 0);
my $with = run_cmd($bin, '--tokens', '1,403,407,261,378', '-n', 4, '--temp', 0);
ok($r->{rc} == 0 && $r->{out} eq $with->{out} && $r->{out} =~ /^\d+ \d+ \d+ \d+\n$/,
   '--tokens gives the same ids with and without a tokenizer');

# a damaged tokenizer in the blob: a clear error naming it, exit 1, no crash; --tokens unhurt
my $exe = slurp($bin);
# a copy of the program with $bytes at offset $at, as the program $dir/$name
sub patched {
    my ($name, $at, $bytes) = @_;
    my $copy = $exe;
    substr($copy, $at, length $bytes) = $bytes;
    my $path = "$dir/$name";
    open my $fh, '>', $path or die "$path: $!";
    binmode $fh;
    print $fh $copy;
    close $fh;
    chmod 0755, $path;
    return $path;
}
my $at = index($exe, "KTOK\x01\0\0\0");
ok($at > 0, 'the tokenizer is in the program');
for my $bad (['version', 4, pack('V', 9), qr/entry 'kiln.tokenizer': version 9/],
             ['token count', 20, pack('V', 0x7fffffff), qr/entry 'kiln.tokenizer': 2147483647 tokens do not fit/],
             ['BOS id', 24, pack('V', 4096), qr/BOS id 4096 out of range/]) {
    my ($what, $off, $bytes, $re) = @$bad;
    my $path = patched('damaged', $at + $off, $bytes);
    $r = run_cmd($path, '--prompt', 'Once');
    ok($r->{rc} == 1 && !$r->{sig} && $r->{err} =~ $re && $r->{out} eq '',
       "damaged tokenizer ($what): a clear error, exit 1, nothing printed") or diag(Golden::how($r));
    $r = run_cmd($path, '--tokens', '1,2', '-n', 1);
    ok($r->{rc} == 0, "damaged tokenizer ($what): --tokens still runs");
}

# a damaged blob entry of the tokenizer (kiln_blob.h: 72-byte entries after the tensors',
# the tokenizer's next to last, before the checksums): every run refuses the blob, naming
# the entry
{
    my ($boff) = unpack('Q<', substr($exe, -24, 8));
    my (undef, undef, $n, $table) = unpack('a8 V V Q<', substr($exe, $boff, 24));
    my $entry = $boff + $table + 72 * ($n - 2);
    my ($name_off) = unpack('Q<', substr($exe, $entry, 8));
    my $name = unpack('Z*', substr($exe, $boff + $name_off, 64));
    is($name, 'kiln.tokenizer', "the blob's next to last entry (of $n) is the tokenizer");
    for my $bad (['offset', 8, pack('Q<', 1 << 40), qr/entry \d+ 'kiln.tokenizer': data .*outside the blob/],
                 ['dtype', 24, pack('V', 0), qr/entry \d+ 'kiln.tokenizer': .*not of its shape's size/],
                 ['rank', 28, pack('V', 2), qr/entry \d+ 'kiln.tokenizer'/]) {
        my ($what, $off, $bytes, $re) = @$bad;
        my $path = patched('bad-entry', $entry + $off, $bytes);
        $r = run_cmd($path, '--tokens', '1,2', '-n', 1);
        ok($r->{rc} == 1 && !$r->{sig} && $r->{err} =~ $re && $r->{out} eq '',
           "the tokenizer's blob entry with a bad $what: a clear error, exit 1") or diag(Golden::how($r));
    }
}

# usage errors
for my $u ([['--prompt', 'x', '--tokens', '1'], qr/do not mix/],
           [['--prompt', 'x', '--logits', "$dir/l"], qr/do not mix/],
           [['--tokens', '1', '--ignore-eos'], qr/--ignore-eos applies to --prompt/],
           [['--prompt', 'x', '--bench-pp', 4], qr/do not mix/]) {
    my ($args, $re) = @$u;
    $r = run_cmd($bin, @$args);
    ok($r->{rc} == 2 && $r->{err} =~ $re, "usage error: @$args") or diag(Golden::how($r));
}
$r = run_cmd($bin, '--prompt', $p0, '--ctx', 4);
ok($r->{rc} == 2 && $r->{err} =~ /the text is 5 tokens, but the context of this run \(--ctx\) holds 4/
   && $r->{out} eq '', 'a prompt longer than the context: a usage error, nothing printed')
    or diag(Golden::how($r));
$r = run_cmd($kiln, 'dump', 'examples/llama2c.kiln', '--tokenizer', "$M/tok512.bin");
ok($r->{rc} == 2 && $r->{err} =~ /--tokenizer applies to build/, 'kiln dump --tokenizer: a usage error');
$r = run_cmd($kiln, 'build', 'examples/llama2c.kiln', '--weights', "$M/stories260K.bin",
             '--tokenizer', "$M/stories260K.bin", '-o', "$dir/nope");
ok($r->{rc} != 0 && $r->{err} =~ /stories260K\.bin: error: / && !-e "$dir/nope",
   'a file that is no tokenizer: an error naming it, no program') or diag(Golden::how($r));
$r = run_cmd($bin, '--help');
like($r->{out}, qr/--prompt TEXT.*-i .*--ignore-eos/s, '--help documents --prompt, -i, --ignore-eos');

# The README's first command ends in examples/demo.sh: it tells run.c's story, its first
# 120 tokens (a prefix of the golden text), before the IR tour.
{
    local $ENV{DEMO_DIR} = "$dir/demo";
    local $ENV{KILN} = $kiln;
    my $d = run_cmd('sh', 'examples/demo.sh');
    my ($story) = $d->{out} =~ /--temp 0 \(greedy; timings on stderr\)\n(.*?)\n== /s;
    ok($d->{rc} == 0 && defined $story && length $story > 200
       && substr($gold0, 0, length $story) eq $story, 'demo.sh: the story is run.c\'s')
        or diag(Golden::how($d));
}

done_testing();
