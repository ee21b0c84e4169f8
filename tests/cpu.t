#!/usr/bin/perl
# The kernel path chosen at program start (runtime/cpu.c): PROG --cpu prints one line (the
# path and the features seen) and exits 0; KILN_CPU=portable|avx2 lowers the path, never
# raises it, and an unknown value keeps it; and a whole model's teacher-forced logits and
# generated tokens are byte for byte the same on every path this CPU allows, for f32, f16 and
# bf16 weights (odd widths: dim 40 and hidden 72 leave tails past the panels of 16 rows). On
# a CPU without AVX2 every run takes the portable path and the comparison holds trivially;
# --cpu says which.
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
my @paths = ('portable');
for my $wt (qw(f32 f16 bf16)) {
    my $prog = "$dir/llama-$wt";
    $r = run_cmd($kiln, 'build', 'examples/llama.kiln', @d, '--weights', $w, '--wtype', $wt,
                 '-o', $prog);
    ok($r->{rc} == 0, "$wt: kiln build") or do { diag(Golden::how($r)); next };
    if ($wt eq 'f32') {
        $r = run_on(undef, $prog, '--cpu');
        ok($r->{rc} == 0 && $r->{out} =~ /^cpu: path (avx512|avx2|portable); features( \w+)+; brand "[^"\n]*"\n\z/,
           '--cpu prints one line and exits 0') or diag(Golden::how($r));
        note($r->{out});
        my $seen = $r->{out};
        my %f = map { $_ => 1 } ($seen =~ /features((?: \w+)+);/)[0] =~ /(\w+)/g;
        my $avx2 = $f{avx2} && $f{fma} && $f{f16c};
        my $avx512 = $avx2 && $f{avx512f} && $f{avx512bw} && $f{avx512vl} && $f{avx512vnni};
        my $want = $avx512 ? 'avx512' : $avx2 ? 'avx2' : 'portable';
        like($seen, qr/^cpu: path $want;/, "--cpu: the best path the features allow ($want)");
        @paths = ('portable', $avx2 ? 'avx2' : (), $avx512 ? 'avx512' : ());
        $r = run_on('portable', $prog, '--cpu');
        ok($r->{rc} == 0 && $r->{out} =~ /^cpu: path portable \(KILN_CPU=portable\); /,
           'KILN_CPU=portable forces the portable path') or diag(Golden::how($r));
        $r = run_on('avx2', $prog, '--cpu');
        my $low = $avx2 ? 'avx2' : 'portable';
        ok($r->{rc} == 0 && $r->{out} =~ /^cpu: path $low \(KILN_CPU=avx2\); /,
           "KILN_CPU=avx2 lowers the path to avx2 when the CPU has it, never raises it ($low)")
            or diag(Golden::how($r));
        $r = run_on('sse9', $prog, '--cpu');
        is($r->{out}, $seen, 'an unknown KILN_CPU keeps the detected path');
    }
    my %logits;
    my %gen;
    for my $path (@paths, undef) {
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
    for my $name (grep { $_ ne 'portable' } @paths, 'detected') {
        ok(defined $logits{$name} && length $logits{$name} > 0
           && $logits{$name} eq $logits{portable},
           "$wt: logits on the $name path equal the portable ones byte for byte");
        is($gen{$name}, $gen{portable}, "$wt: generated tokens on the $name path equal the portable ones");
    }
}
done_testing();
