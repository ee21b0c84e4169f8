#!/usr/bin/perl
# tests/bench/fuse.pl - what fusion (codegen/fuse.c) gains: the same stories110M-shaped dense
# model (d 768, 12 layers, 12 heads, hidden 2048, vocab 32000, untied; det-weights, f32) built
# with fusion and with -O0, run interleaved ROUNDS times (default 5): a 128-token prompt in
# blocks of 64, then 32 generated tokens (one at a time). Prints tokens/s min/median/max of
# each. A benchmark, not a test: it asserts nothing.
#   perl tests/bench/fuse.pl [ROUNDS] [THREADS]
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Golden qw(run_cmd);
use Bench;

my $rounds = shift // 5;
my $threads = shift // 1;
my $dir = Golden::tmpdir();
local $Golden::TIMEOUT = 3600;
my %prog = Bench::build_stories110m($dir, fused => [], O0 => ['-O0']);
my $tokens = Bench::prompt();
my $r;
my %tps;
for my $round (1 .. $rounds) {
    for my $k ('O0', 'fused') {
        $r = run_cmd($prog{$k}, '--tokens', $tokens, '-n', 32, '--temp', 0, '--batch', 64,
                     '--threads', $threads, '--bench', '--bench-runs', 1);
        die Golden::how($r) if $r->{rc};
        for my $what ('prompt', 'generation') {
            my ($t) = $r->{err} =~ /bench: $what \d+ tokens, 1 runs: tokens\/s min ([\d.]+)/
                or die "no $what rate in: $r->{err}";
            push @{ $tps{$k}{$what} }, $t;
        }
        printf "# round %d %-5s: prompt %.1f tok/s, generation %.2f tok/s\n", $round, $k,
            $tps{$k}{prompt}[-1], $tps{$k}{generation}[-1];
    }
}
for my $what ('prompt', 'generation') {
    for my $k ('O0', 'fused') {
        my @s = sort { $a <=> $b } @{ $tps{$k}{$what} };
        printf "%-10s %-5s %d thread%s: tok/s min %.2f median %.2f max %.2f\n", $what, $k,
            $threads, $threads == 1 ? '' : 's', $s[0], Bench::median(@s), $s[-1];
    }
}
