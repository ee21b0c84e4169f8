#!/usr/bin/perl
# The emitted code of every elementwise, reduction and vector op, against the same arithmetic
# done in Perl (double precision) on the same det-weights: tests/ops/allops.kiln.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use List::Util qw(sum max min);
use Golden qw(run_cmd);
use RefModel;

my $kiln = Golden::kiln();
my $dir  = Golden::tmpdir();
my $spec = 'tests/ops/allops.kiln';
my $st   = "$dir/w.safetensors";
my $r = run_cmd($kiln, 'weights', $spec, '--seed', 11, '-o', $st);
ok($r->{rc} == 0, 'kiln weights') or diag(Golden::how($r));
$r = run_cmd($kiln, 'build', $spec, '--weights', $st, '-o', "$dir/prog");
ok($r->{rc} == 0, 'kiln build') or diag(Golden::how($r));

my $w = RefModel::load_safetensors($st);
my ($V, $D) = (12, 8);
my @E = map { @$_ } @{ $w->{'embed.weight'}{rows} };
my @bias = @{ $w->{'bias.weight'}{rows}[0] };
my $gain = 1.5;

sub sigm { 1 / (1 + exp(-$_[0])) }
sub tanh_ { my $e = exp(2 * $_[0]); ($e - 1) / ($e + 1) }
sub gelu { my $v = shift; 0.5 * $v * (1 + tanh_(0.7978845608 * ($v + 0.044715 * $v**3))) }

sub forward {
    my ($tok) = @_;
    my @x = map { $E[$tok * $D + $_] * 8 + $bias[$_] } 0 .. $D - 1;
    my $mx = max(@x);
    my @ex = map { exp($_ - $mx) } @x;
    my $se = sum(@ex);
    my @a = map { $_ / $se } @ex;
    my @b = (@x[0 .. 3], map { $_ > 0 ? $_ : 0 } @x[4 .. 7]);
    my @c = map { $_ > 0 ? exp($_ * 0.25) : gelu($_) } @x;
    my @d = map { sigm($_)**2 + sqrt($_ * $_ + 1) - 1 / sqrt($_ * $_ + 2) } @x;
    my $s = sum(@x) + max(@x) + sum(@x) / $D + sum(map { $x[$_] * $a[$_] } 0 .. $D - 1)
          + scalar(grep { $_ > 0.5 } @x) + $x[3] + $bias[2];
    my @m = map { ($_ >= 0.1) + ($_ <= -0.1) * 2 + ($_ < 0) * 3 + 1 - 0 + !($_ > 1) } @x;
    my @l = map { ((($_ > 0) && ($_ < 1)) || ($_ < -1)) ? 1 : 0 } @x;
    my @y = map { $a[$_] + $b[$_] + $c[$_] + $d[$_] * $s / 10 - tanh_($x[$_]) / (1 + $x[$_]**2)
                  + $m[$_] * 0.125 + $l[$_] * $gain } 0 .. $D - 1;
    my @z = map { max($_, -1) + min($_, 1) + (-$_) * sigm(-$_) } @y;
    my @logits = map { my $v = $_; sum(map { $E[$v * $D + $_] * $z[$_] } 0 .. $D - 1) } 0 .. $V - 1;
    return (\@logits, sum(@y) / $D);
}

my @tokens = (0, 3, 7, 11, 5);
$r = run_cmd("$dir/prog", '--tokens', join(',', @tokens), '--logits', "$dir/l.txt", '--stats');
ok($r->{rc} == 0, 'the program runs') or diag(Golden::how($r));
my $rows = Golden::read_rows("$dir/l.txt") // [];
is(scalar @$rows, scalar @tokens, 'one logits row per token');
my $mean_y = 0;
for my $i (0 .. $#tokens) {
    my ($want, $my) = forward($tokens[$i]);
    $mean_y += $my / @tokens;
    my $peak = max(map { abs } @$want);
    my $worst = max(map { abs($rows->[$i][$_] - $want->[$_]) } 0 .. $V - 1) / $peak;
    ok($worst < 1e-5, sprintf('token %d: logits match the Perl arithmetic (worst %.2e of the row max)',
                             $tokens[$i], $worst));
}
my $stats = Golden::parse_stats($r->{err});
ok(abs(($stats->{mean_y}{value} // 1e9) - $mean_y) < 1e-4 * (1 + abs $mean_y),
   "stat mean_y = $mean_y (got " . ($stats->{mean_y}{value} // 'none') . ')');
done_testing();
