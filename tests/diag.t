#!/usr/bin/perl
# Diagnostics: for every tests/diag/NAME.kiln, `kiln check` must fail cleanly
# (non-zero exit, no signal) and print exactly tests/diag/NAME.err on stderr.
# Paths are given relative to the repository root, as in the .err files.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Golden;

my @files = sort glob 'tests/diag/*.kiln';
plan skip_all => 'no tests/diag/*.kiln files' unless @files;

for my $f (@files) {
    (my $errf = $f) =~ s/\.kiln$/.err/;
    subtest $f => sub {
        my $want = Golden::slurp($errf);
        ok(defined $want, "$errf exists") or return;
        my $r = Golden::run_cmd(Golden::kiln(), 'check', $f);
        ok(!$r->{sig} && !$r->{timed_out}, 'not killed by a signal') or diag(Golden::how($r));
        ok($r->{rc} != 0, 'non-zero exit');
        is($r->{err}, $want, "stderr equals $errf");
    };
}
done_testing();
