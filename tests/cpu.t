#!/usr/bin/perl
# The kernel path chosen at program start (runtime/cpu.c): PROG --cpu prints one line (the
# path and the features seen) and exits 0; KILN_CPU=portable forces the portable path; and a
# whole model's teacher-forced logits and generated tokens are byte for byte the same on the
# path this CPU allows and on the portable one, for f32, f16 and bf16 weights (odd widths:
# dim 40 and hidden 72 leave tails past the 16 lanes). On a CPU without AVX2 both runs take
# the portable path and the comparison holds trivially; --cpu says which.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Golden qw(run_cmd);

my $kiln = Golden::kiln();
my $dir  = Golden::tmpdir();
my @d = map { ('-D', $_) } qw(dim=40 heads=5 kv_heads=1 hidden=72 layers=2 vocab=61 ctx=64);

my $w = "$dir/w.safetensors";
my $r = run_cmd($kiln, 'weights', 'examples/llama.kiln', @d, '--seed', 3, '-o', $w);
ok($r->{rc} == 0, 'kiln weights') or diag(Golden::how($r));

sub run_on {
    my ($path, @args) = @_;
    local $ENV{KILN_CPU} = $path;
    delete $ENV{KILN_CPU} unless defined $path;
    return run_cmd(@args);
}

my $tokens = join ',', map { ($_ * 17 + 2) % 61 } 0 .. 29;
for my $wt (qw(f32 f16 bf16)) {
    my $prog = "$dir/llama-$wt";
    $r = run_cmd($kiln, 'build', 'examples/llama.kiln', @d, '--weights', $w, '--wtype', $wt,
                 '-o', $prog);
    ok($r->{rc} == 0, "$wt: kiln build") or do { diag(Golden::how($r)); next };
    if ($wt eq 'f32') {
        $r = run_on(undef, $prog, '--cpu');
        ok($r->{rc} == 0 && $r->{out} =~ /^cpu: path (avx2|portable); features( \w+)+; brand "[^"\n]*"\n\z/,
           '--cpu prints one line and exits 0') or diag(Golden::how($r));
        note($r->{out});
        my $seen = $r->{out};
        ok(($seen =~ /path avx2/) == ($seen =~ /features.* avx2\b/ && $seen =~ / f16c\b/),
           '--cpu: avx2 path exactly when avx2 and f16c are seen');
        $r = run_on('portable', $prog, '--cpu');
        ok($r->{rc} == 0 && $r->{out} =~ /^cpu: path portable \(KILN_CPU=portable\); /,
           'KILN_CPU=portable forces the portable path') or diag(Golden::how($r));
        $r = run_on('avx512', $prog, '--cpu');
        (my $same = $seen) =~ s/ \(KILN_CPU=\w+\)//;
        is($r->{out}, $same, 'any other KILN_CPU keeps the detected path (never an upgrade)');
    }
    my %logits;
    my %gen;
    for my $path ('portable', undef) {
        my $name = $path // 'detected';
        my $lf = "$dir/$wt-$name.logits";
        $r = run_on($path, $prog, '--tokens', $tokens, '--logits', $lf, '--batch', 7);
        ok($r->{rc} == 0 && -s $lf, "$wt: $name path --logits") or diag(Golden::how($r));
        $logits{$name} = Golden::slurp($lf);
        $r = run_on($path, $prog, '--tokens', $tokens, '-n', 12);
        ok($r->{rc} == 0 && $r->{out} =~ /^\d+( \d+){11}\n$/, "$wt: $name path generates")
            or diag(Golden::how($r));
        $gen{$name} = $r->{out};
    }
    ok(defined $logits{detected} && length $logits{detected} > 0
       && $logits{detected} eq $logits{portable},
       "$wt: logits on the detected path equal the portable ones byte for byte");
    is($gen{detected}, $gen{portable}, "$wt: generated tokens equal the portable ones");
}
done_testing();
