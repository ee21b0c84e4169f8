#!/usr/bin/perl
# DSMoE golden: dense FFN split into experts with sigmoid threshold routing.
# Also checks the per-layer active fraction reported by --stats.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Golden;

my $r = Golden::golden_case(name => 'dsmoe-tiny', spec => 'examples/dsmoe.kiln',
                            format => 'safetensors', stats => 1);
my $g = $r->{golden};
my $ntok = @{ $g->{tokens} };
SKIP: {
    skip 'teacher-forced run did not happen', 1 unless defined $r->{stats_err};
    my $stats = Golden::parse_stats($r->{stats_err});
    my @af = @{ $g->{active_fraction} };
    my @bad;
    for my $l (0 .. $#af) {
        my $s = $stats->{"active_fraction[$l]"};
        if (!$s) { push @bad, "no 'stat active_fraction[$l]' line"; next }
        # 6-digit text; the fraction is a multiple of 1/(16*8) so 1e-6 separates values
        push @bad, "active_fraction[$l] = $s->{value}, want $af[$l]"
            unless $s->{value} =~ /^[-+]?[\d.]+(?:e[-+]?\d+)?$/i && abs($s->{value} - $af[$l]) <= 1e-6 + 1e-12;
        push @bad, "active_fraction[$l]: $s->{samples} samples, want $ntok"
            if defined $s->{samples} && $s->{samples} != $ntok;
    }
    ok(!@bad, "dsmoe-tiny: --stats active_fraction per layer = @af")
        or do { diag($_) for @bad; diag("stderr:\n$r->{stats_err}") };
}
done_testing();
