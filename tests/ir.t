#!/usr/bin/perl
# IR dumps: for every tests/ir/NAME.kiln, `kiln dump NAME.kiln [args]` must print
# exactly tests/ir/NAME.ir.  Extra arguments come from a first line of the form
#   # args: -D layers=2 -D tied=0
# and for every tests/ir/NAME.cmd (one line: the arguments of `kiln dump`, the spec first,
# e.g. `examples/dsmoe.kiln -D layers=1 --scope l=0`), the dump must equal NAME.ir.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Golden;

my @files = sort(glob('tests/ir/*.kiln'), glob('tests/ir/*.cmd'));
plan skip_all => 'no tests/ir/*.kiln or *.cmd files' unless @files;
my $dir = Golden::tmpdir();

for my $f (@files) {
    (my $irf = $f) =~ s/\.(kiln|cmd)$/.ir/;
    my $src = Golden::slurp($f) // '';
    my ($first) = split /\n/, $src, 2;
    my @args;
    if ($f =~ /\.cmd$/) {
        @args = split(' ', $first // '');
    } else {
        @args = ($f, ($first // '') =~ /^\s*#\s*args:\s*(.*?)\s*$/ ? split(' ', $1) : ());
    }
    my $want = Golden::slurp($irf);
    if (!defined $want) { fail("$f: $irf exists"); next }
    my $r = Golden::run_cmd(Golden::kiln(), 'dump', @args);
    if ($r->{rc} != 0 || $r->{sig}) {
        fail("$f: kiln dump @args");
        diag(Golden::how($r));
        next;
    }
    my $same = $r->{out} eq $want;
    ok($same, "$f: dump equals $irf") or do {
        (my $base = $f) =~ s{.*/}{};
        my $got = "$dir/$base.got.ir";
        open my $fh, '>', $got or die "$got: $!";
        print $fh $r->{out};
        close $fh;
        diag(scalar `diff -u '$irf' '$got'`);
    };
}
done_testing();
