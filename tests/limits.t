#!/usr/bin/perl
# Resource limits (base/limits.h, README "LIMITS"): for each documented maximum, an input at
# the limit is accepted and one past it is refused cleanly: exit 1, no signal, a message
# naming the file (and the line and column in a spec, the key or tensor in a checkpoint)
# and the limit. Where an input at the limit would be huge (a 100 MB safetensors header, a
# 256 MiB JSON file, 2^36 elements), the file only claims the size (sparse files, headers)
# and the at-limit case checks that the limit is not what refuses it.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Golden;

my $dir = Golden::tmpdir();
our $kiln = Golden::kiln();

# A model whose forward returns RET (x is a [dim] vector); ITEMS go before the weights.
sub spec {
    my (%o) = @_;
    my $ret = $o{ret} // 'linear(x, e)';
    my $items = $o{items} // '';
    my $weights = $o{weights} // '';
    my $body = $o{body} // '';
    return "$o{pre}" . "model m {\n  param dim = 4\n$items  weights {\n    e [dim, dim] = \"e\"\n"
         . "$weights  }\n  forward(token) {\n    x = e[token]\n$body    return $ret\n  }\n}\n"
        if defined $o{pre};
    return spec(%o, pre => '');
}

# passes(label, @argv): exit 0, no signal.
sub passes {
    my ($label, @argv) = @_;
    my $r = Golden::run_cmd($kiln, @argv);
    ok($r->{rc} == 0 && !$r->{sig} && !$r->{timed_out}, "at the limit: $label")
        or diag(Golden::how($r) . "\n" . substr($r->{err}, 0, 2000));
    return $r;
}

# refused(label, file, qr/message/, @argv): exit 1, no signal, no sanitizer report, stderr
# names the file (with line:col when $o{at}) and matches the message.
sub refused {
    my ($label, $file, $re, @argv) = @_;
    my $r = Golden::run_cmd($kiln, @argv);
    subtest "past the limit: $label" => sub {
        ok(!$r->{sig} && !$r->{timed_out}, 'not killed by a signal') or diag(Golden::how($r));
        is($r->{rc}, 1, 'exit 1');
        like($r->{err}, qr/^\Q$file\E(:\d+:\d+)?: error: /m, 'the error names the file');
        like($r->{err}, $re, 'the limit is named') or diag(substr($r->{err}, 0, 2000));
        unlike($r->{err}, qr/AddressSanitizer|runtime error|internal error/, 'no sanitizer report');
    };
    return $r;
}

sub check_spec {
    my ($name, $text) = @_;
    return Golden::write_file("$dir/$name.kiln", $text);
}

# ---------------------------------------------------------------- specs

# Source size: 16 MiB (16777216 bytes), padded with a comment.
{
    my $base = spec();
    my $at = $base . '#' . ('x' x (16777216 - length($base) - 2)) . "\n";
    is(length $at, 16777216, 'the at-limit spec is 16 MiB');
    passes('a 16 MiB spec', 'check', check_spec('size-at', $at));
    my $f = check_spec('size-over', $at . "\n");
    refused('a spec of 16 MiB + 1 byte', $f, qr/larger than 16777216 bytes/, 'check', $f);
}

# Identifiers: 256 bytes.
for my $n (256, 257) {
    my $id = 'a' x $n;
    my $f = check_spec("ident$n", spec(items => "  param $id = 1\n", body => "    y = $id\n"));
    if ($n == 256) { passes('a 256-byte identifier', 'check', $f) }
    else {
        refused('a 257-byte identifier', $f, qr/:3:9: error: identifier 'a+\.\.\.' is 257 bytes long; the limit is 256/,
                'check', $f);
    }
}

# String literals: 4096 bytes after escapes (\n counts one).
for my $n (4096, 4097) {
    my $s = ('m' x ($n - 1)) . '\n';
    my $f = check_spec("string$n", spec(items => "  assert 1, \"$s\"\n"));
    if ($n == 4096) { passes('a 4096-byte string literal', 'check', $f) }
    else {
        refused('a 4097-byte string literal', $f,
                qr/:3:13: error: string literal is 4097 bytes long; the limit is 4096/, 'check', $f);
    }
}

# Expression nesting: 256 levels (255 negations around x).
for my $n (255, 256) {
    my $f = check_spec("expr$n", spec(ret => ('-' x $n) . 'x'));
    if ($n == 255) { passes('an expression 256 deep', 'check', $f) }
    else { refused('an expression 257 deep', $f, qr/:\d+:\d+: error: expression nests more than 256 deep/, 'check', $f) }
}

# Calls nested: 256 (f(255) calls f 256 times, each inside the last). The evaluator also
# stops at half the C stack's limit; the sanitizers' frames need more than 8 MB for 256
# calls, so these run with a 64 MB stack.
for my $n (255, 256) {
    my $f = check_spec("calls$n", spec(pre => "def f(n) = n == 0 ? 0 : f(n - 1)\n",
                                       items => "  let z = f($n)\n"));
    my @big_stack = ('/bin/sh', '-c', 'ulimit -s 65536 && exec "$0" "$@"', $kiln);
    local $kiln = $big_stack[0];
    my @pre = @big_stack[1 .. $#big_stack];
    if ($n == 255) { passes('calls 256 deep', @pre, 'check', $f) }
    else { refused('calls 257 deep', $f, qr/:1:25: error: calls nest more than 256 deep/, @pre, 'check', $f) }
}

# Loops and sums nested: 16.
for my $n (16, 17) {
    my $open = join '', map { "    for i$_ in 0..1 {\n" } 1 .. $n;
    my $f = check_spec("loops$n", spec(body => $open . "    x = x * 1\n" . ("    }\n" x $n)));
    if ($n == 16) { passes('16 nested loops', 'check', $f) }
    else { refused('17 nested loops', $f, qr/:\d+:\d+: error: loops and sums nest more than 16 deep/, 'check', $f) }
}

# Weight loops nested: 4 (an array has at most 4 indices).
for my $n (4, 5) {
    my $open = join '', map { "    for i$_ in 0..1 {\n" } 1 .. $n;
    my $name = join '.', map { "{i$_}" } 1 .. $n;
    my $f = check_spec("wloops$n", spec(weights => $open . "    w [dim] = \"w.$name\"\n"
                                                   . ("    }\n" x $n)));
    if ($n == 4) { passes('4 nested weight loops', 'check', $f) }
    else { refused('5 nested weight loops', $f, qr/:\d+:\d+: error: weights nest at most 4 loops deep/, 'check', $f) }
}

# Loop iterations: 16000000 in all (an empty loop body: about a second).
{
    my $f = check_spec('iterations', spec(items => "  param n = 15999999\n",
                                          body => "    for i in 0..n { }\n"));
    passes('15999999 loop iterations (16000000 with the forward\'s)', 'check', $f, '-D', 'n=15999999');
    refused('16000001 loop iterations', $f, qr/:\d+:\d+: error: loops run more than 16000000 iterations/,
            'check', $f, '-D', 'n=16000001');
}

# Instructions: 2000000 (the over-limit case only: two adds an iteration).
{
    my $f = check_spec('insts', spec(body => "    for i in 0..1000001 { x = x + x\n x = x * x }\n"));
    refused('2000002 instructions', $f, qr/:\d+:\d+: error: the model unrolls to more than 2000000 instructions/,
            'check', $f);
}

# Elements: 2^36 (kiln check allocates nothing for a weight). A spec's weights have rank 1
# or 2 (a rule of the language; the rank limit, 4, is tested on checkpoints below).
{
    my $f = check_spec('elems-at', spec(weights => "    w [65536, 1048576] = \"w\"\n"));
    passes('a weight of 2^36 elements', 'check', $f);
    $f = check_spec('elems-over', spec(weights => "    w [65536, 1048577] = \"w\"\n"));
    refused('a weight of 2^36 + 65536 elements', $f, qr/:5:5: error: weight 'w': a tensor of more than 2\^36 elements/, 'check', $f);
}

# A tensor name once expanded: 1024 bytes (a string parameter and a loop index).
for my $n (1024, 1025) {
    my $prefix = 'p' x ($n - 2);
    my $f = check_spec("tname$n", spec(items => "  param prefix = \"$prefix\"\n",
                                       weights => "    for l in 10..11 { w [dim] = \"{prefix}{l}\" }\n"));
    if ($n == 1024) { passes('a 1024-byte tensor name', 'check', $f) }
    else { refused('a 1025-byte tensor name', $f, qr/:\d+:\d+: error: the tensor name "\{prefix\}\{l\}\.\.\." expands to more than 1024 bytes/, 'check', $f) }
}

# Views of views: 16 deep (each a slice of the one before); the dump at the limit reads back.
for my $n (16, 17) {
    my $w = "    w0 [64, 4] = \"w\"\n";
    $w .= "    w$_ [" . (64 - $_) . ", 4] = w" . ($_ - 1) . "[0:" . (64 - $_) . ", :]\n" for 1 .. $n;
    my $f = check_spec("views$n", spec(weights => $w, ret => "linear(x, e) + linear(x, w$n)[0:4]"));
    if ($n == 16) {
        my $r = passes('views 16 deep', 'dump', $f);
        my $ir = Golden::write_file("$dir/views16.ir", $r->{out});
        passes('their dump read back', 'dump', $ir);
    } else {
        refused('views 17 deep', $f, qr/:\d+:\d+: error: weight 'w17' is a view of a view \.\.\. 17 deep; the limit is 16/,
                'check', $f);
    }
}

# ---------------------------------------------------------------- GGUF (kiln inspect)

sub gstr { pack('Q<', length $_[0]) . $_[0] }
sub gguf {
    my ($nt, @kv) = @_;   # tensor count (claimed), then key => [type, bytes] pairs
    my $body = '';
    my $n = 0;
    while (@kv) {
        my ($k, $v) = splice @kv, 0, 2;
        $body .= gstr($k) . pack('V', $v->[0]) . $v->[1];
        $n++;
    }
    return "GGUF" . pack('VQ<Q<', 3, $nt, $n) . $body;
}
my @arch = ('general.architecture' => [8, gstr('llama')]);

# A string value: 1 MiB.
for my $n (1048576, 1048577) {
    my $f = Golden::write_file("$dir/str$n.gguf", gguf(0, @arch, 't.s' => [8, gstr('x' x $n)]));
    if ($n == 1048576) { passes('a 1 MiB GGUF string', 'inspect', $f) }
    else { refused('a GGUF string of 1 MiB + 1', $f, qr/metadata key 't\.s': its string value .* is 1048577 bytes long; the limit is 1048576/, 'inspect', $f) }
}

# An array: 2^24 items (u8: 16 MiB).
for my $n (16777216, 16777217) {
    my $f = Golden::write_file("$dir/arr$n.gguf",
                               gguf(0, @arch, 't.a' => [9, pack('VQ<', 0, $n) . ("\0" x $n)]));
    if ($n == 16777216) { passes('a GGUF array of 2^24 items', 'inspect', $f) }
    else { refused('a GGUF array of 2^24 + 1 items', $f, qr/metadata key 't\.a': the array has 16777217 items; the limit is 16777216/, 'inspect', $f) }
}

# Counts claimed by the header: 2^20 tensors, 2^20 metadata entries. At the limit the
# file is refused only because the entries are not there.
for my $what (['tensor count', 0], ['metadata count', 1]) {
    for my $n (1048576, 1048577) {
        my $head = "GGUF" . pack('VQ<Q<', 3, $what->[1] ? 0 : $n, $what->[1] ? $n : 0);
        my $f = Golden::write_file("$dir/count$what->[1]-$n.gguf", $head);
        my $r = Golden::run_cmd($kiln, 'inspect', $f);
        if ($n == 1048576) {
            unlike($r->{err}, qr/limit/, "at the limit: $what->[0] $n is not refused for its size")
                or diag($r->{err});
        } else {
            refused("$what->[0] $n", $f, qr/$what->[0] 1048577 is more than the limit of 1048576/, 'inspect', $f);
        }
    }
}

# A tensor's elements: 2^36 (claimed by its tensor info).
for my $d1 (1048576, 1048577) {
    my $info = gstr('w') . pack('V', 2) . pack('Q<Q<', 65536, $d1) . pack('V', 0) . pack('Q<', 0);
    my $f = Golden::write_file("$dir/elems$d1.gguf", gguf(1, @arch) . $info);
    my $r = Golden::run_cmd($kiln, 'inspect', $f);
    if ($d1 == 1048576) {
        unlike($r->{err}, qr/limit/, 'at the limit: a tensor of 2^36 elements is not refused for its size')
            or diag($r->{err});
    } else {
        refused('a GGUF tensor of 2^36 + 65536 elements', $f,
                qr/tensor 'w': it has 68719542272 elements; the limit is 68719476736/, 'inspect', $f);
    }
}

# ---------------------------------------------------------------- safetensors, JSON

# The JSON header: 100000000 bytes (a sparse file claiming one byte more).
{
    my $f = "$dir/big.safetensors";
    Golden::write_file($f, pack('Q<', 100000001) . '{');
    truncate $f, 100000100 or die "truncate: $!";
    refused('a safetensors header of 100000001 bytes', $f,
            qr/header length 100000001 is larger than the limit of 100000000 bytes/, 'inspect', $f);
    my $ok = "$dir/ok.safetensors";
    my $hdr = '{"w":{"dtype":"F32","shape":[1,2,3,4],"data_offsets":[0,96]}}';
    Golden::write_file($ok, pack('Q<', length $hdr) . $hdr . ("\0" x 96));
    passes('a safetensors tensor of rank 4', 'inspect', $ok);
    $hdr = '{"w":{"dtype":"F32","shape":[1,2,3,4,1],"data_offsets":[0,96]}}';
    my $bad = Golden::write_file("$dir/rank5.safetensors", pack('Q<', length $hdr) . $hdr . ("\0" x 96));
    refused('a safetensors tensor of rank 5', $bad, qr/tensor 'w': rank 5 is more than 4/, 'inspect', $bad);
    my $name = 'n' x 1025;
    $hdr = qq({"$name":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}});
    $bad = Golden::write_file("$dir/name.safetensors", pack('Q<', length $hdr) . $hdr . ("\0" x 4));
    refused('a safetensors tensor name of 1025 bytes', $bad,
            qr/its name is 1025 bytes long; the limit is 1024/, 'inspect', $bad);
    $name = 'n' x 1024;
    $hdr = qq({"$name":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}});
    passes('a safetensors tensor name of 1024 bytes', 'inspect',
           Golden::write_file("$dir/name1024.safetensors", pack('Q<', length $hdr) . $hdr . ("\0" x 4)));
}

# A JSON file read whole (config.json): 256 MiB (a sparse file one byte larger).
{
    my $f = "$dir/config.json";
    Golden::write_file($f, '{');
    truncate $f, 268435457 or die "truncate: $!";
    my $s = check_spec('cfg', spec(items => "  param vocab = 4\n"));
    refused('a config.json of 256 MiB + 1', $f, qr/the JSON file is 268435457 bytes; the limit is 268435456/,
            'check', $s, '--config', $f);
    # nesting: jansson's own limit, 2048 (over it only: a nested value is no parameter)
    my $deep = Golden::write_file("$dir/deep.json", ('{"a":' x 2049) . '1' . ('}' x 2049));
    refused('a config.json nested 2049 deep', $deep, qr/maximum parsing depth reached/,
            'check', $s, '--config', $deep);
}

done_testing();
