#!/usr/bin/perl
# tests/bench/prefill.pl - how much blocks of tokens speed up a prompt (`ninja bench-prefill`).
#
# Builds a stories110M-shaped dense model (d 768, 12 layers, 12 heads, hidden 2048, vocab
# 32000, untied classifier; det-weights, f32) and runs a prompt of 128 tokens with --batch 1
# (one token at a time: every weight is read once per token) and --batch 64 (once per block),
# interleaved, ROUNDS times (default 5). Prints tokens/s min/median/max for each and the
# per-round ratios. A benchmark, not a test: it asserts nothing.
#   perl tests/bench/prefill.pl [ROUNDS] [THREADS]
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
my %prog = Bench::build_stories110m($dir, s110m => []);
my $tokens = Bench::prompt();
my $r;
my (%tps, @ratio);
for my $round (1 .. $rounds) {
    my %this;
    for my $batch (1, 64) {
        $r = run_cmd($prog{s110m}, '--tokens', $tokens, '-n', 0, '--batch', $batch, '--threads',
                     $threads, '--bench', '--bench-runs', 1);
        die Golden::how($r) if $r->{rc};
        my ($t) = $r->{err} =~ /bench: prompt 128 tokens, 1 runs: tokens\/s min ([\d.]+)/
            or die "no prompt rate in: $r->{err}";
        push @{ $tps{$batch} }, $t;
        $this{$batch} = $t;
    }
    push @ratio, $this{64} / $this{1};
    printf "# round %d: --batch 1 %.1f tok/s, --batch 64 %.1f tok/s, ratio %.2f\n", $round,
        $this{1}, $this{64}, $ratio[-1];
}
for my $batch (1, 64) {
    my @s = sort { $a <=> $b } @{ $tps{$batch} };
    printf "prompt of 128 tokens, --batch %-2d, %d thread%s: tok/s min %.1f median %.1f max %.1f\n",
        $batch, $threads, $threads == 1 ? '' : 's', $s[0], Bench::median(@s), $s[-1];
}
my @s = sort { $a <=> $b } @ratio;
printf "ratio --batch 64 / --batch 1 (per round): min %.2f median %.2f max %.2f\n", $s[0], Bench::median(@s), $s[-1];
