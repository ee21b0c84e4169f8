#!/usr/bin/perl
# Every golden (tests/golden/*.golden, from independent programs) at -O0: the passes that
# correctness needs and nothing else (no folding, fusion, fused attention, head-major
# caches or layer dedup). The fully optimized builds are dense.t, finedeep.t, dsmoe.t and
# uniattn.t; both must match the same reference logits.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Golden;

my $dir = Golden::tmpdir();
my @cases = (
    # [golden, spec]
    ['dense-mha-tiny',  'examples/llama2c.kiln'],
    ['dense-gqa-tiny',  'examples/llama2c.kiln'],
    ['dense-half-tiny', 'examples/llama.kiln'],
    ['dense-s15m',      'examples/llama2c.kiln'],
    ['dsmoe-tiny',      'examples/dsmoe.kiln'],
    ['finedeep-tiny',   'examples/finedeep.kiln'],
    ['uniattn-tiny',    'examples/uniattn.kiln'],
);
my @goldens = map { s{.*/}{}r =~ s{\.golden$}{}r } glob('tests/golden/*.golden');
is(join(' ', sort map { $_->[0] } @cases), join(' ', sort @goldens),
   'every golden in tests/golden is run at -O0');
for my $c (@cases) {
    my ($name, $spec) = @$c;
    my $r = Golden::golden_case(name => $name, spec => $spec, format => 'safetensors',
                                dir => $dir, label => "$name -O0", build_flags => ['-O0']);
    unlink grep { defined } $r->{weights}, $r->{prog};   # dense-s15m: 60 MB per copy
}
done_testing();
