#!/usr/bin/perl
# Nothing silently wrong (issue 12): kiln build refuses NaN and infinite weights (as stored,
# after narrowing to f16, in q8_0/q4_0 block scales, before quantization), naming the tensor
# and the first index, unless --allow-nonfinite; the blob carries checksums that PROG
# --verify (and a library's NAME_verify) recompute, naming a damaged tensor; logits that are
# NaN or infinite stop generation with an error and exit 1 (-n, --prompt, --logits), and the
# library's sample returns NAME_ERR_NONFINITE; an interrupted build (SIGINT, SIGTERM while
# packing, during the C compiler, in calibration, for --lib and --blob) or a failed one
# leaves nothing in $TMPDIR and no output or temporary beside it.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP ();
use POSIX ();
use Time::HiRes ();
use Golden qw(run_cmd slurp write_file);

my $kiln = Golden::kiln();
my $dir = Golden::tmpdir();
my @D = map { ('-D', $_) } qw(dim=32 hidden=64 layers=2 heads=2 kv_heads=1 vocab=50 ctx=16);
my $spec = 'examples/llama.kiln';
my $good = "$dir/good.safetensors";
Golden::make_weights(spec => $spec, seed => 7, defines => \@D, out => $good, label => 'weights')
    or BAIL_OUT('kiln weights failed');
my $q0 = 'model.layers.0.self_attn.q_proj.weight';    # [32, 32]

# st_patch(SRC, DST, NAME, sub { my ($vals, $dtype) = @_; ... }): a copy of the safetensors
# SRC whose tensor NAME's values (f32 as numbers, f16 as 16-bit patterns) the sub changes.
sub st_patch {
    my ($src, $dst, $name, $edit) = @_;
    my $st = slurp($src);
    my $hlen = unpack 'Q<', substr($st, 0, 8);
    my $hdr = JSON::PP::decode_json(substr($st, 8, $hlen));
    my $t = $hdr->{$name} or die "no $name in $src";
    my ($b, $e) = @{ $t->{data_offsets} };
    my $fmt = $t->{dtype} eq 'F32' ? 'f<*' : 'v*';
    my @v = unpack $fmt, substr($st, 8 + $hlen + $b, $e - $b);
    $edit->(\@v, $t->{dtype});
    substr($st, 8 + $hlen + $b, $e - $b) = pack $fmt, @v;
    return write_file($dst, $st);
}

sub build {
    my ($w, $out, @flags) = @_;
    return run_cmd($kiln, 'build', $spec, @D, '--weights', $w, '-o', $out, @flags);
}

# refused(label, result, out, qr...): exit 1, no signal, no output, no temporary beside it.
sub refused {
    my ($label, $r, $out, @re) = @_;
    subtest $label => sub {
        ok($r->{rc} == 1 && !$r->{sig}, 'exit 1') or diag(Golden::how($r));
        like($r->{err}, $_, 'the message') for @re;
        ok(!-e $out, 'no output');
        ok(!glob("$out.tmp.*"), 'no temporary beside it');
    };
}

# ---- 1. non-finite weights refused at build

my $nan = st_patch($good, "$dir/nan.safetensors", $q0, sub { $_[0][3 * 32 + 17] = 'NaN' + 0 });
refused('a NaN weight', build($nan, "$dir/p-nan"), "$dir/p-nan",
        qr/llama\.kiln:\d+:\d+: error: weight 'wq\[0\]\+wk\[0\]\+wv\[0\]' \(f32, computed by the packer\) holds 1 non-finite value: the first, NaN, at \[3, 17\] \(from "\Q$q0\E" \[3, 17\]\)/,
        qr/--allow-nonfinite/);
refused('a NaN weight, -O0 (no stacking): the checkpoint name', build($nan, "$dir/p-nan", '-O0'),
        "$dir/p-nan", qr/error: weight 'wq\[0\]' \("\Q$q0\E", f32\) holds 1 non-finite value: the first, NaN, at \[3, 17\]/);
my $inf = st_patch($good, "$dir/inf.safetensors", 'model.norm.weight',
                   sub { $_[0][7] = '-Inf' + 0; $_[0][9] = 'Inf' + 0 });
refused('two infinite norm gains', build($inf, "$dir/p-inf"), "$dir/p-inf",
        qr/error: weight 'final_norm' \("model\.norm\.weight", f32\) holds 2 non-finite values: the first, -Inf, at \[7\]/);

# a finite f32 that f16 cannot hold: fine as f32, refused when narrowed
my $big = st_patch($good, "$dir/big.safetensors", $q0, sub { $_[0][5] = 1e6 });
my $r = build($big, "$dir/p-big");
ok($r->{rc} == 0, 'a weight of 1e6 builds as f32') or diag(Golden::how($r));
refused('a weight of 1e6 narrowed to f16', build($big, "$dir/p-big16", '--wtype', 'f16', '-O0'),
        "$dir/p-big16", qr/weight 'wq\[0\]' \("\Q$q0\E", f16\) holds 1 non-finite value: the first, \+Inf, at \[0, 5\]: the finite value 1e\+06 overflows f16 when narrowed to it/);
my $huge = st_patch($good, "$dir/huge.safetensors", $q0, sub { $_[0][40] = -1e10 });
refused('a block whose q8_0 scale overflows f16', build($huge, "$dir/p-q8", '--wtype', 'q8_0', '-O0'),
        "$dir/p-q8", qr/holds 1 non-finite block scale: the first, \+Inf, in the block at \[1, 0\]: its finite values \(largest \|x\| 1e\+10\) give an f16 scale past 65504 when quantized to q8_0/);
refused('a NaN quantized to q4_0 (finite blocks, wrong values)', build($nan, "$dir/p-q4", '--wtype', 'q4_0', '-O0'),
        "$dir/p-q4", qr/holds 1 non-finite value: the first, NaN, at \[3, 17\], before quantization to q4_0/);

# stored f16 and bf16: the bits as they are (0x7e00 is an f16 NaN, 0x7f80 a bf16 infinity)
for my $c (['f16', 0x7e00, 'NaN'], ['bf16', 0x7f80, '\+Inf']) {
    my ($dt, $bits, $what) = @$c;
    my $w = "$dir/$dt.safetensors";
    Golden::make_weights(spec => $spec, seed => 7, defines => [@D, '--dtype', $dt], out => $w,
                         label => "$dt weights") or next;
    st_patch($w, "$dir/$dt-bad.safetensors", $q0, sub { $_[0][33] = $bits });
    refused("a $dt weight stored non-finite", build("$dir/$dt-bad.safetensors", "$dir/p-$dt", '-O0'),
            "$dir/p-$dt", qr/weight 'wq\[0\]' \("\Q$q0\E", $dt\) holds 1 non-finite value: the first, $what, at \[1, 1\]/);
}

# a GGUF Q8_0 block stored with a NaN scale (inspect gives each tensor's file offset)
{
    my $g = "$dir/q8.gguf";
    $r = run_cmd($kiln, 'weights', $spec, @D, '--seed', 7, '--format', 'gguf', '--dtype', 'q8_0',
                 '-o', $g);
    ok($r->{rc} == 0, 'a q8_0 GGUF') or diag(Golden::how($r));
    my ($qoff) = run_cmd($kiln, 'inspect', $g)->{out} =~ /^\s*\Q$q0\E\s+\S+\s+Q8_0\s+\[32, 32\]\s+\@(\d+)/m;
    my $bin = slurp($g);
    ok(defined $qoff && $qoff + 34 * 32 <= length $bin, "inspect: $q0 at \@" . ($qoff // '?'));
    substr($bin, ($qoff // 0) + 34 * 3, 2) = pack('v', 0x7e00);   # block 3: row 3 (one block a row)
    write_file("$dir/q8-bad.gguf", $bin);
    refused('a q8_0 block stored with a NaN scale', build("$dir/q8-bad.gguf", "$dir/p-gq8", '-O0'),
            "$dir/p-gq8", qr/weight 'wq\[0\]' \("\Q$q0\E", q8_0\) holds 1 non-finite block scale: the first, NaN, in the block at \[3, 0\]/);
}

# ---- 2. --allow-nonfinite, and what the program then does with NaN logits

$r = build($nan, "$dir/p-allow", '--allow-nonfinite');
ok($r->{rc} == 0 && -x "$dir/p-allow", '--allow-nonfinite builds') or diag(Golden::how($r));
like($r->{err}, qr/kiln: warning: 1 non-finite weight values \(or block scales\) in 1 tensor, packed as they are \(--allow-nonfinite\); the first in 'wq\[0\]\+wk\[0\]\+wv\[0\]' .* at \[3, 17\]/,
     '... with a warning that counts them');
$r = build($nan, "$dir/p-werr", '--allow-nonfinite', '-Werror');
ok($r->{rc} == 1 && !-e "$dir/p-werr", '--allow-nonfinite -Werror: the warning is an error');

my $nan_logits = qr/^p-allow: error: the logits at position 2 are not finite \(NaN at token id \d+\); the weights or the model produce NaN$/m;
$r = run_cmd("$dir/p-allow", '--tokens', '1,2,3', '-n', 4);
ok($r->{rc} == 1 && !$r->{sig} && $r->{err} =~ $nan_logits && $r->{out} eq '',
   '-n: NaN logits stop before the first token, exit 1, nothing printed') or diag(Golden::how($r));
$r = run_cmd("$dir/p-allow", '--tokens', '1,2,3', '--logits', "$dir/nan.logits");
my $rows = Golden::read_rows("$dir/nan.logits") // [];
ok($r->{rc} == 1 && $r->{err} =~ /the logits at position 0 are not finite/ && @$rows == 3 &&
   !-e "$dir/nan.logits.tmp", '--logits: every row written, then an error naming the first bad position, exit 1')
    or diag(Golden::how($r));
$r = run_cmd("$dir/p-allow", '--tokens', '1,2,3', '-n', 2, '--temp', '0.8', '--top-k', 5);
ok($r->{rc} == 1 && $r->{err} =~ $nan_logits, 'sampling options: the same error');

# finite weights whose forward overflows: final norm gains of 3e38
my $over = st_patch($good, "$dir/over.safetensors", 'model.norm.weight', sub { $_ = 3e38 for @{ $_[0] } });
$r = build($over, "$dir/p-over");
ok($r->{rc} == 0, 'gains of 3e38 are finite: they build') or diag(Golden::how($r));
$r = run_cmd("$dir/p-over", '--tokens', '1,2', '-n', 3);
ok($r->{rc} == 1 && $r->{err} =~ /p-over: error: the logits at position 1 are not finite \((NaN|[+-]Inf) at token id \d+\)/ &&
   $r->{out} eq '', 'a forward that overflows: exit 1, the position named') or diag(Golden::how($r));

# --prompt: stories260K with NaN in every embedding row (llama2.c .bin: 7 ints, then the table)
{
    my $m = 'examples/models';
    my $bin = slurp("$m/stories260K.bin");
    my ($dim, undef, undef, undef, undef, $vocab) = unpack('l<7', $bin);
    substr($bin, 28, 4 * $dim * abs($vocab)) = pack('f<', 'NaN' + 0) x ($dim * abs($vocab));
    write_file("$dir/s-nan.bin", $bin);
    $r = run_cmd($kiln, 'build', 'examples/llama2c.kiln', '--weights', "$dir/s-nan.bin",
                 '--tokenizer', "$m/tok512.bin", '--allow-nonfinite', '-o', "$dir/s-nan");
    ok($r->{rc} == 0 && $r->{err} =~ /warning: \d+ non-finite weight values/, 'stories260K with NaN embeddings, --allow-nonfinite')
        or diag(Golden::how($r));
    $r = run_cmd("$dir/s-nan", '--prompt', 'Once upon', '-n', 8);
    ok($r->{rc} == 1 && $r->{err} =~ /s-nan: error: the logits at position \d+ are not finite \(NaN at token id \d+\)/ &&
       $r->{out} !~ /\n./, '--prompt: an error, exit 1, no generated text') or diag(Golden::how($r));
}

# ---- 3. checksums and --verify

$r = build($good, "$dir/p");
ok($r->{rc} == 0, 'a good program') or diag(Golden::how($r));
$r = run_cmd("$dir/p", '--verify');
ok($r->{rc} == 0 && $r->{out} =~ /^\Q$dir\E\/p: weight blob OK: \d+ entries, \d+ bytes, every checksum matches$/m,
   '--verify: OK, exit 0') or diag(Golden::how($r));
$r = run_cmd("$dir/p", '--verify', '--tokens', '1');
ok($r->{rc} == 2 && $r->{err} =~ /--verify checks the weight blob and exits/, '--verify takes no run options');

# patched(NAME, OFFSET, BYTES): a copy of the program with BYTES at OFFSET, executable
my $exe = slurp("$dir/p");
my ($boff) = unpack('Q<', substr($exe, -24, 8));
my (undef, undef, $n, $table) = unpack('a8 V V Q<', substr($exe, $boff, 24));
sub entry {
    my ($k) = @_;
    my ($name_off, $off, $bytes) = unpack('Q< Q< Q<', substr($exe, $boff + $table + 72 * $k, 24));
    return (unpack('Z*', substr($exe, $boff + $name_off, 128)), $off, $bytes);
}
sub patched {
    my ($name, $at, $bytes) = @_;
    my $copy = $exe;
    substr($copy, $at, length $bytes) = $bytes;
    write_file("$dir/$name", $copy);
    chmod 0755, "$dir/$name";
    return "$dir/$name";
}
my ($last) = entry($n - 1);
is($last, 'kiln.checksums', 'the last entry holds the checksums');
my ($t3, $off3, $bytes3) = entry(3);
my $flip = chr(ord(substr($exe, $boff + $off3 + 5, 1)) ^ 0x10);
my $damaged = patched('damaged', $boff + $off3 + 5, $flip);
$r = run_cmd($damaged, '--verify');
ok($r->{rc} == 1 && $r->{err} =~ /^damaged: error: weight blob: \Q$damaged\E: tensor 3 '\Q$t3\E' \(blob bytes \d+ \.\. \d+\) is damaged: its checksum does not match$/m &&
   $r->{out} eq '', '--verify: a flipped bit names the tensor, exit 1') or diag(Golden::how($r));
$r = run_cmd($damaged, '--tokens', '1,2', '-n', 1);
ok($r->{rc} == 0, 'a start does not hash the weights: the damaged program still runs');
my (undef, $coff) = entry($n - 1);
$r = run_cmd(patched('bad-sums', $boff + $coff + 3, "\xff"), '--verify');
ok($r->{rc} == 1 && $r->{err} =~ /entry \d+ 'kiln\.checksums' is damaged \(its own checksum does not match\)/,
   '--verify: damaged checksums are named as such') or diag(Golden::how($r));
my ($t0, $off0) = entry(0);
$r = run_cmd(patched('bad-pad', $boff + $off0 - 1, "\x01"), '--verify');   # the zeros before tensor 0
ok($r->{rc} == 1 && $r->{err} =~ /the header, entry table or names \(blob bytes 0 \.\. \d+\) are damaged/,
   '--verify: damage before the first tensor') or diag(Golden::how($r));

# --blob FILE
$r = run_cmd($kiln, 'build', $spec, @D, '--weights', $good, '--blob', "$dir/w.kblob", '-o', "$dir/pb");
ok($r->{rc} == 0, 'a program and its blob apart') or diag(Golden::how($r));
$r = run_cmd("$dir/pb", '--verify', '--blob', "$dir/w.kblob");
ok($r->{rc} == 0 && $r->{out} =~ /^\Q$dir\E\/w\.kblob: weight blob OK/, '--verify --blob FILE: OK');
{
    my $b = slurp("$dir/w.kblob");
    my ($tab) = unpack('Q<', substr($b, 16, 8));
    my ($no, $o) = unpack('Q< Q<', substr($b, $tab + 72, 16));
    my $name = unpack('Z*', substr($b, $no, 128));
    substr($b, $o + 7, 1) = chr(ord(substr($b, $o + 7, 1)) ^ 1);
    write_file("$dir/bad.kblob", $b);
    $r = run_cmd("$dir/pb", '--verify', '--blob', "$dir/bad.kblob");
    ok($r->{rc} == 1 && $r->{err} =~ /\Q$dir\E\/bad\.kblob: tensor 1 '\Q$name\E' .* is damaged/,
       '--verify --blob FILE: the damaged tensor named') or diag(Golden::how($r));
}

# ---- 4. the C library: NAME_verify, NAME_sample on NaN logits
{
    my $cc = $ENV{CC} // 'cc';
    $r = run_cmd($kiln, 'build', $spec, @D, '--weights', $nan, '--allow-nonfinite', '--lib', '-o', "$dir/lib");
    ok($r->{rc} == 0, 'a library with a NaN weight') or diag(Golden::how($r));
    my $c = <<'EOF';
#include <stdio.h>
#include "llama.h"
int main(int argc, char **argv)
{
    llama_model *m;
    if (llama_open(&m, argv[1]) != llama_OK) {
        printf("open: %s\n", llama_last_error(m));
        return 1;
    }
    int v = llama_verify(m);
    printf("verify %d %s\n", v, v ? llama_last_error(m) : "");
    llama_context *c;
    llama_context_new(m, 1, &c);
    int32_t ids[3] = {1, 2, 3}, t = -1;
    int e = llama_eval(c, ids, 3, 0, NULL);
    int s = llama_sample(c, 0.0f, 1.0f, NULL, &t);
    printf("eval %d sample %d token %d: %s\n", e, s, (int)t, llama_last_error(c));
    printf("%s\n", llama_strerror(s));
    llama_context_free(c);
    llama_close(m);
    return 0;
}
EOF
    write_file("$dir/app.c", $c);
    my ($link) = (slurp("$dir/lib/llama.h") // '') =~ /^ \*   link:  cc app\.c -IDIR DIR\/libllama\.a -lm -lpthread(.*)$/m;
    $r = run_cmd($cc, '-std=c11', "$dir/app.c", "-I$dir/lib", "$dir/lib/libllama.a", '-lm', '-lpthread',
                 split(' ', $link // ''), '-o', "$dir/app");
    ok($r->{rc} == 0, 'an app links with it') or diag(Golden::how($r));
    $r = run_cmd("$dir/app", "$dir/lib/llama.kblob");
    like($r->{out}, qr/^verify 0 $/m, 'llama_verify: OK');
    like($r->{out}, qr/^eval 0 sample -7 token -1: sample: the logits at position 2 are not finite \(NaN at token id \d+\)/m,
         'llama_sample on NaN logits: llama_ERR_NONFINITE, no token, the position in the error');
    like($r->{out}, qr/^the logits are not finite/m, 'llama_strerror(llama_ERR_NONFINITE)');
    my $b = slurp("$dir/lib/llama.kblob");
    my ($tab) = unpack('Q<', substr($b, 16, 8));
    my ($no, $o) = unpack('Q< Q<', substr($b, $tab + 72 * 2, 16));
    my $name = unpack('Z*', substr($b, $no, 128));
    substr($b, $o, 1) = chr(ord(substr($b, $o, 1)) ^ 0x40);
    write_file("$dir/lib-bad.kblob", $b);
    $r = run_cmd("$dir/app", "$dir/lib-bad.kblob");
    like($r->{out}, qr/^verify -2 weight blob: the blob file: tensor 2 '\Q$name\E' .* is damaged/m,
         'llama_verify: llama_ERR_BLOB naming the damaged tensor');
}

# ---- 5. interrupted and failed builds leave nothing behind

my $tmp = "$dir/tmp";      # kiln's $TMPDIR: nothing of a build may stay in it
mkdir $tmp;
mkdir "$dir/out";
my $slowcc = write_file("$dir/slowcc", "#!/bin/sh\necho \$\$ > '$dir/cc.pid'\nsleep 30\nexec "
                        . ($ENV{CC} // 'cc') . " \"\$@\"\n");
chmod 0755, $slowcc;

# spawn(ENV, ARGS...): kiln started with ENV added, stderr into a file; (pid, stderr file)
sub spawn {
    my ($env, @args) = @_;
    my $err = "$dir/spawn.err";
    unlink $err;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        $ENV{$_} = $env->{$_} for keys %$env;
        # a prove started in the background (no job control) ignores SIGINT, and an ignored
        # signal stays ignored across exec (kiln keeps it so, as nohup asks): restore it
        $SIG{$_} = 'DEFAULT' for qw(INT TERM HUP);
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', "$dir/spawn.out";
        open STDERR, '>', $err;
        { no warnings 'exec'; exec { $kiln } $kiln, @args; }
        POSIX::_exit(127);
    }
    return ($pid, $err);
}

sub wait_for {
    my ($what) = @_;
    for (1 .. 300) {
        return 1 if $what->();
        Time::HiRes::sleep(0.05);
    }
    return 0;
}

sub leftovers {
    opendir my $d, $tmp or return ('?');
    my @t = grep { !/^\.\.?$/ } readdir $d;
    opendir my $o, "$dir/out" or return ('?');
    push @t, map { "out/$_" } grep { !/^\.\.?$/ } readdir $o;
    return @t;
}

my @builds = (
    ['a program', ['-o', "$dir/out/p"]],
    ['--blob', ['--blob', "$dir/out/w.kblob", '-o', "$dir/out/p"]],
    ['--lib', ['--lib', '-o', "$dir/out/lib"]],
    ['calibration (--share-softmax)', ['--share-softmax=2,0,2', '-o', "$dir/out/p"]],
);
for my $sig (qw(INT TERM)) {
    for my $b (@builds) {
        my ($what, $args) = @$b;
        my ($pid, $err) = spawn({TMPDIR => $tmp, KILN_TEST_PAUSE => 'pack'}, 'build', $spec, @D,
                                '--weights', $good, @$args);
        my $paused = wait_for(sub { (slurp($err) // '') =~ /paused at pack/ });
        my @during = leftovers();
        kill $sig, $pid;
        waitpid $pid, 0;
        my $st = $?;
        subtest "SIG$sig while packing ($what)" => sub {
            ok($paused && @during, 'paused with temporaries made') or diag("during: @during");
            is($st & 127, POSIX->can("SIG$sig")->(), "killed by SIG$sig");
            is_deeply([leftovers()], [], 'nothing left in $TMPDIR nor beside the output');
        };
    }
    # during the C compiler: the compiler's process group is stopped and reaped first
    unlink "$dir/cc.pid";
    my ($pid) = spawn({TMPDIR => $tmp, CC => $slowcc}, 'build', $spec, @D, '--weights', $good,
                      '-o', "$dir/out/p");
    my $started = wait_for(sub { -s "$dir/cc.pid" });
    my @during = leftovers();
    Time::HiRes::sleep(0.1);
    kill $sig, $pid;
    waitpid $pid, 0;
    my $st = $?;
    my $ccpid = (slurp("$dir/cc.pid") // '') =~ /(\d+)/ ? $1 : 0;
    subtest "SIG$sig during the C compiler" => sub {
        ok($started && @during, 'the compiler started, temporaries made') or diag("during: @during");
        is($st & 127, POSIX->can("SIG$sig")->(), "killed by SIG$sig");
        ok($ccpid && !kill(0, $ccpid), 'the compiler is gone too');
        is_deeply([leftovers()], [], 'nothing left in $TMPDIR nor beside the output');
    };
}

# a failing compiler: the error path cleans up too
{
    local $ENV{TMPDIR} = $tmp;
    local $ENV{CC} = 'false';
    $r = run_cmd($kiln, 'build', $spec, @D, '--weights', $good, '-o', "$dir/out/p");
    ok($r->{rc} == 1 && $r->{err} =~ /the C compiler failed/ && !leftovers(),
       'a failed compiler: exit 1, nothing left') or diag(Golden::how($r), "left: ", join ' ', leftovers());
}

done_testing();
