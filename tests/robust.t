#!/usr/bin/perl
# Robustness: inputs that once crashed `kiln check` (heap corruption, a fixed loop stack, a
# diagnostics buffer, C-stack overflow in the evaluator and the parser) must give a clear
# error instead: exit 1, no signal, a message naming the file.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Path ();
use Golden;

my $dir = Golden::tmpdir();

sub write_spec { Golden::write_file(@_) }

# A model whose forward returns linear(EXPR, e); EXPR may use x (a [dim] vector).
sub model_with {
    my ($expr, %o) = @_;
    my $weights = $o{weights} // 'e [dim, dim] = "e"';
    my $blocks = $o{blocks} // '';
    return "model m {\n  param dim = 4\n  weights {\n    $weights\n  }\n$blocks"
         . "  forward(token) {\n    x = e[token]\n    return linear($expr, e)\n  }\n}\n";
}

# check_fails(label, file, qr/message/): kiln check FILE exits 1 without a signal and its
# stderr names FILE and matches the message.
sub check_fails {
    my ($label, $file, $re) = @_;
    my $r = Golden::run_cmd(Golden::kiln(), 'check', $file);
    subtest $label => sub {
        ok(!$r->{sig} && !$r->{timed_out}, 'not killed by a signal') or diag(Golden::how($r));
        is($r->{rc}, 1, 'exit 1');
        like($r->{err}, qr/^\Q$file\E:\d+:\d+: error: /m, 'the error names the file');
        like($r->{err}, $re, 'the expected message');
        unlike($r->{err}, qr/AddressSanitizer|runtime error|internal error/, 'no sanitizer report');
    };
}

# 1. Four nested 0..65536 weight loops: 2^64 entries wrapped the count to 0.
my $loops = join '', map { ('  ' x $_) . "for i$_ in 0..65536 {\n" } 1 .. 4;
my $close = join '', map { ('  ' x $_) . "}\n" } reverse 1 .. 4;
check_fails('four 0..65536 weight loops',
            write_spec("$dir/weights4.kiln",
                       model_with('x', weights => "e [dim, dim] = \"e\"\n$loops"
                                  . "          w [dim] = \"w.{i1}.{i2}.{i3}.{i4}\"\n$close")),
            qr/weights4\.kiln:\d+:\d+: error: a weight array has more than 16000000 entries/);

# 2. Sums nested past the loop stack (and `for` loops around sums share it).
my $sum = 'x';
$sum = "sum i$_ in 0..1: ($sum)" for 1 .. 20;
check_fails('20 nested sums', write_spec("$dir/sums.kiln", model_with($sum)),
            qr/error: loops and sums nest more than 16 deep/);
my $fors = join '', map { "    for l$_ in 0..1 {\n" } 1 .. 10;
my $sum8 = 'x';
$sum8 = "sum j$_ in 0..1: ($sum8)" for 1 .. 8;
my $forspec = "model m {\n  param dim = 4\n  weights { e [dim, dim] = \"e\" }\n"
            . "  forward(token) {\n    x = e[token]\n$fors      x = $sum8\n"
            . ("    }\n" x 10) . "    return linear(x, e)\n  }\n}\n";
check_fails('10 for loops around 8 nested sums', write_spec("$dir/forsum.kiln", $forspec),
            qr/error: loops and sums nest more than 16 deep/);

# 3. An error in a spec whose path is far longer than 512 characters: the path prints whole.
my $long = $dir;
$long .= '/' . ($_ x 120) for qw(a b c d e f);
File::Path::make_path($long);
my $loopspec = "model m {\n  param dim = 4\n  weights { e [dim, dim] = \"e\" }\n"
             . "  forward(token) {\n    x = e[token]\n    for l in 0..3 {\n      x = x + nowhere\n"
             . "    }\n    return linear(x, e)\n  }\n}\n";
my $longfile = write_spec("$long/undefined.kiln", $loopspec);
ok(length $longfile > 700, 'the long path is over 700 characters');
check_fails('an error in a file with a long path', $longfile, qr/nowhere/);
# the loop repeats the error: printed once, with the whole path
my $lr = Golden::run_cmd(Golden::kiln(), 'check', $longfile);
my @hits = $lr->{err} =~ /^\Q$longfile\E:7:\d+: error: /mg;
is(scalar @hits, 1, 'the repeated error prints once, with the whole path') or diag($lr->{err});

# 4. Deeply nested calls and operators: the evaluator stops at its depth limit...
for my $n (300, 3000) {
    check_fails("$n nested calls", write_spec("$dir/calls$n.kiln",
                                              model_with(('exp(' x $n) . 'x' . (')' x $n))),
                qr/error: expression nests more than 256 deep/);
}
check_fails('3000 nested negations', write_spec("$dir/neg.kiln", model_with(('-' x 3000) . 'x')),
            qr/error: expression nests more than 256 deep/);
# ...block calls inside deep expressions are bounded by the stack in use...
my $rec = model_with('layer(x, 0)',
                     blocks => "  block layer(x, l) {\n    return " . ('-' x 200)
                             . "layer(x, l + 1)\n  }\n");
check_fails('a recursive block inside a deep expression', write_spec("$dir/rec.kiln", $rec),
            qr/error: (expressions, statements and calls nest too deeply|calls nest more than \d+ deep)/);
# ...and the parser stops at its own stack limit.
check_fails('100000 nested calls', write_spec("$dir/calls100k.kiln",
                                              model_with(('exp(' x 100000) . 'x' . (')' x 100000))),
            qr/error: nested too deeply/);
check_fails('100000 nested parentheses', write_spec("$dir/parens100k.kiln",
                                                    model_with(('(' x 100000) . 'x' . (')' x 100000))),
            qr/error: nested too deeply/);

# 3000 parentheses make no tree nodes: the spec is fine.
my $r = Golden::run_cmd(Golden::kiln(), 'check',
                        write_spec("$dir/parens3k.kiln", model_with(('(' x 3000) . 'x' . (')' x 3000))));
ok($r->{rc} == 0 && !$r->{sig}, '3000 nested parentheses check cleanly') or diag(Golden::how($r));

done_testing();
