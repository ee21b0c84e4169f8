#!/usr/bin/perl
# Dense LLaMA goldens (tests/golden/dense-*.golden) through the real CLI:
# det-weights -> kiln build -> teacher-forced logits and greedy tokens.
# The llama2.c goldens run twice: from a llama2.c .bin and from safetensors
# (the same weights in both layouts must give the same logits).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Golden;

my $dir = Golden::tmpdir();
my @cases = (
    # [golden, spec, formats]
    ['dense-mha-tiny',  'examples/llama2c.kiln', 'llama2c', 'safetensors'],
    ['dense-gqa-tiny',  'examples/llama2c.kiln', 'llama2c', 'safetensors'],
    ['dense-half-tiny', 'examples/llama.kiln',   'safetensors'],
    ['dense-s15m',      'examples/llama2c.kiln', 'llama2c', 'safetensors'],
);
for my $c (@cases) {
    my ($name, $spec, @formats) = @$c;
    my %logits;
    for my $fmt (@formats) {
        my $r = Golden::golden_case(name => $name, spec => $spec, format => $fmt, dir => $dir);
        # dense-s15m's weights are 60 MB per copy: drop them once used
        unlink grep { defined } $r->{weights}, $r->{prog};
        $logits{$fmt} = Golden::slurp($r->{logits}) if $r->{logits};
    }
    if (@formats > 1) {
        # same spec, same weight values in two layouts: the programs must agree exactly
        my ($a, $b) = @logits{@formats[0, 1]};
        ok(defined $a && defined $b && $a eq $b,
           "$name: $formats[0] and $formats[1] weights give identical logits");
    }
}
done_testing();
