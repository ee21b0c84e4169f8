#!/usr/bin/perl
# UniAttn golden: softmax sharing inside SuperBlocks (G=3, b=2, e=8).
# Also checks that the --stats KV-cache report gives reuser layers no K cache.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Golden;

my $r = Golden::golden_case(name => 'uniattn-tiny', spec => 'examples/uniattn.kiln',
                            format => 'safetensors', stats => 1);
my $g = $r->{golden};
SKIP: {
    skip 'teacher-forced run did not happen', 3 unless defined $r->{stats_err};
    # NOTE: the KV report format is not fixed yet; Golden::kv_report_layers parses
    # it loosely (lines naming `l=N` with k/v cache labels).
    my $kv = Golden::kv_report_layers($r->{stats_err});
    my @leaders = @{ $g->{leaders} };
    my @reusers = sort { $a <=> $b } keys %{ $g->{reusers} };
    my @no_k = grep { !($kv->{$_} && $kv->{$_}{k}) } @leaders;
    ok(!@no_k, "uniattn-tiny: KV report shows a K cache for leaders @leaders")
        or diag("leaders without a K cache in the report: @no_k\nstderr:\n$r->{stats_err}");
    my @with_k = grep { $kv->{$_} && $kv->{$_}{k} } @reusers;
    ok(!@with_k, "uniattn-tiny: no K cache for reuser layers @reusers")
        or diag(join '', map { "layer $_: $kv->{$_}{line}" } @with_k);
    my @no_v = grep { !($kv->{$_} && $kv->{$_}{v}) } @reusers;
    ok(!@no_v, "uniattn-tiny: reuser layers @reusers keep a V cache")
        or diag("reusers without a V cache in the report: @no_v\nstderr:\n$r->{stats_err}");
}
done_testing();
