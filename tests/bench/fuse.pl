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

my $rounds = shift // 5;
my $threads = shift // 1;
my $kiln = Golden::kiln();
my $dir = Golden::tmpdir();
local $Golden::TIMEOUT = 3600;
my @shape = map { ('-D', $_) } qw(dim=768 layers=12 heads=12 kv_heads=12 hidden=2048 vocab=32000
                                   ctx=1024 tied=0);
print "# building a stories110M-shaped model (438 MB of f32 weights) in $dir, twice\n";
my $r = run_cmd($kiln, 'weights', 'examples/llama.kiln', @shape, '--seed', 1, '-o', "$dir/w.safetensors");
die Golden::how($r) if $r->{rc};
my %prog = (fused => "$dir/fused", O0 => "$dir/plain");
for my $k (sort keys %prog) {
    $r = run_cmd($kiln, 'build', 'examples/llama.kiln', @shape, '--weights', "$dir/w.safetensors",
                 '-o', $prog{$k}, $k eq 'O0' ? ('-O0') : ());
    die Golden::how($r) if $r->{rc};
}
unlink "$dir/w.safetensors";
my $tokens = join ',', map { ($_ * 7919 + 1) % 32000 } 0 .. 127;

sub median { my @s = sort { $a <=> $b } @_; return $s[@s / 2] }
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
            $threads, $threads == 1 ? '' : 's', $s[0], median(@s), $s[-1];
    }
}
