#!/usr/bin/perl
# Fused attention and the KV caches (passes/fuse_attn.c, passes/kvlayout.c):
# - `--kv-type f32` is the default: the same program output, logits identical;
# - `--kv-type f16` and `bf16` store the caches rounded; the teacher-forced logits of
#   examples/llama.kiln on det-weights stay within 1e-2 of each row's max |logit| of the f32
#   program's (the f32 program matches the goldens within 1e-4: tests/dense.t), for blocks
#   of 1 and 7 tokens alike; --stats reports half the cache bytes;
# - the dumps: caches read only by attention are head-major in the --kv-type dtype (-O0:
#   position-major f32, attention unfused; -O0 refuses --kv-type f16); a UniAttn
#   leader whose probabilities later layers reuse keeps its softmax, every other attention is
#   one `attention` op, reusers have no K cache and no softmax;
# - an attention over values computed from a cache (kept position-major f32) gives the
#   logits of the same model with the values scaled before caching (a scale by 0.5 is exact),
#   and an unread cache is dropped;
# - dumps with bad cache attributes and a bad --kv-type are refused, with nothing written.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Golden qw(run_cmd);

my $kiln = Golden::kiln();
my $dir  = Golden::tmpdir();
my $tol  = 1e-2;

my $w = "$dir/llama.safetensors";
my $r = run_cmd($kiln, 'weights', 'examples/llama.kiln', '--seed', 3, '-o', $w);
ok($r->{rc} == 0, 'llama: kiln weights') or diag(Golden::how($r));

my @tokens = ('--tokens', '1,5,9,200,17,3,77,42,8,0,255,128,64,31,2,99,150,7,11,180');
my (%rows, %stats);
for my $kv ('default', 'f32', 'f16', 'bf16') {
    my $prog = "$dir/llama-$kv";
    my @kvt = $kv eq 'default' ? () : ('--kv-type', $kv);
    $r = run_cmd($kiln, 'build', 'examples/llama.kiln', '--weights', $w, '-o', $prog, @kvt);
    ok($r->{rc} == 0 && -x $prog, "build --kv-type $kv") or do { diag(Golden::how($r)); next };
    for my $batch (1, 7) {
        my $lf = "$dir/logits-$kv-$batch.txt";
        $r = run_cmd($prog, @tokens, '--logits', $lf, '--batch', $batch, '--stats');
        ok($r->{rc} == 0, "$kv: teacher-forced run, --batch $batch") or diag(Golden::how($r));
        $rows{$kv}{$batch} = Golden::read_rows($lf);
        $stats{$kv} = $r->{err};
    }
}
is_deeply($rows{f32}{7}, $rows{default}{7}, '--kv-type f32 gives the default program\'s logits');
is_deeply($rows{f32}{1}, $rows{f32}{7}, 'f32 caches: blocks of 1 and 7 tokens give the same logits');
for my $kv ('f16', 'bf16') {
    for my $batch (1, 7) {
        my $ratio = Golden::max_ratio($rows{$kv}{$batch}, $rows{f32}{$batch});
        ok($ratio <= $tol, sprintf('%s caches, --batch %d: logits within %g of the row max of '
                                   . 'f32 caches (worst %.3g)', $kv, $batch, $tol, $ratio));
        ok($ratio > 0, "$kv caches, --batch $batch: the logits do differ (the caches round)");
    }
    my ($t32) = ($stats{f32} // '') =~ /^kv-cache total: \d+ caches, (\d+) bytes/m;
    my ($tkv) = ($stats{$kv} // '') =~ /^kv-cache total: \d+ caches, (\d+) bytes/m;
    ok(defined $t32 && defined $tkv && $tkv * 2 == $t32,
       "$kv caches: --stats reports half the f32 cache bytes (" . ($tkv // '?') . ' of '
       . ($t32 // '?') . ')');
}

# the dumps
$r = run_cmd($kiln, 'dump', 'examples/llama.kiln', '--kv-type', 'bf16');
my $ncache = () = $r->{out} =~ /^  %\d+ : .*? = cache /mg;
my $nhead = () = $r->{out} =~ /^  %\d+ : bf16\[S<=128, 32\] = cache %\d+ capacity=128 heads=2 layout="head" /mg;
ok($r->{rc} == 0 && $ncache == 8 && $nhead == 8,
   "llama --kv-type bf16: all 8 caches bf16, head-major with 2 heads ($nhead of $ncache)");
my $nfused = () = $r->{out} =~ /= attention /g;
ok($r->{out} !~ /= (softmax|attn_scores|attn_apply) / && $nfused == 4,
   'llama: four fused attention ops, no softmax, scores or apply left');

# -O0: no fusion, position-major f32 caches (the old form); --kv-type f16 needs kvlayout
$r = run_cmd($kiln, 'dump', 'examples/llama.kiln', '-O0');
my $nsoft = () = $r->{out} =~ /= softmax /g;
my $npos = () = $r->{out} =~ /^  %\d+ : f32\[S<=128, 32\] = cache %\d+ capacity=128 mem=/mg;
ok($r->{rc} == 0 && $nsoft == 4 && $npos == 8 && $r->{out} !~ /= attention |layout=/,
   "-O0: unfused attention, 8 position-major f32 caches ($nsoft softmax, $npos caches)");
$r = run_cmd($kiln, 'dump', 'examples/llama.kiln', '-O0', '--kv-type', 'f16');
ok($r->{rc} == 2 && $r->{err} =~ /--kv-type f16 needs the kvlayout pass, which -O0 does not run/
   && $r->{out} eq '', '-O0 --kv-type f16: a usage error, no dump') or diag(Golden::how($r));

$r = run_cmd($kiln, 'dump', 'examples/uniattn.kiln');
my %ops;
for my $l (split /\n/, $r->{out}) {
    next unless $l =~ /^  %\d+ : .*? = (\w+) .*;\s(?:(\S+) )?l=(\d+)$/;
    $ops{$3}{$1}++;
    $ops{$3}{"cache:$2"}++ if $1 eq 'cache';
}
# layers 0 1 lead alone (l < begin), 2 and 5 lead and are reused, 3 4 6 7 reuse
my @shared = (2, 5);
my @alone = (0, 1);
my @reusers = (3, 4, 6, 7);
ok($r->{rc} == 0 && !grep({ !$ops{$_}{softmax} || $ops{$_}{attention} || !$ops{$_}{attn_apply} } @shared),
   'uniattn: leaders 2 and 5, whose probabilities are reused, keep softmax and attn_apply');
ok(!grep({ $ops{$_}{softmax} || ($ops{$_}{attention} // 0) != 1 } @alone),
   'uniattn: leaders 0 and 1, read by nobody, have one fused attention and no softmax');
ok(!grep({ $ops{$_}{softmax} || $ops{$_}{'cache:k_cache'} || $ops{$_}{attention}
           || ($ops{$_}{'cache:v_cache'} // 0) != 1 || ($ops{$_}{attn_apply} // 0) != 1 } @reusers),
   'uniattn: reusers 3 4 6 7 have a V cache and an apply, no K cache, no softmax');

# attention over values computed from a cache
my $mixed = Golden::slurp('tests/ir/kv-mixed.kiln');
(my $pre = $mixed) =~ s/cache\(linear\(x, wv\), ctx\)/cache(linear(x, wv) * 0.5, ctx)/
    or die 'tests/ir/kv-mixed.kiln changed';
$pre =~ s/v_cache \* 0\.5/v_cache/ or die 'tests/ir/kv-mixed.kiln changed';
open my $fh, '>', "$dir/kv-pre.kiln" or die $!;
print $fh $pre;
close $fh;
$r = run_cmd($kiln, 'dump', 'tests/ir/kv-mixed.kiln', '-w');
ok($r->{rc} == 0 && $r->{out} =~ /= cache .*; k_cache$/m && $r->{out} !~ /; unread$/m,
   'kv-mixed: the cache nothing reads is dropped, the others stay');
my $mw = "$dir/kv-mixed.safetensors";
$r = run_cmd($kiln, 'weights', 'tests/ir/kv-mixed.kiln', '--seed', 4, '-o', $mw);
ok($r->{rc} == 0, 'kv-mixed: kiln weights') or diag(Golden::how($r));
my %out;
for my $spec ('tests/ir/kv-mixed.kiln', "$dir/kv-pre.kiln") {
    my $prog = "$dir/prog-" . ($spec =~ /pre/ ? 'pre' : 'mixed');
    $r = run_cmd($kiln, 'build', $spec, '--weights', $mw, '-o', $prog, '-w');
    ok($r->{rc} == 0, "build $spec") or diag(Golden::how($r));
    $r = run_cmd($prog, '--tokens', '3,1,4,1,5,9,2,6', '--logits', "$prog.txt", '--batch', 3);
    ok($r->{rc} == 0, "run $spec") or diag(Golden::how($r));
    $out{$spec} = Golden::slurp("$prog.txt");
}
ok(length($out{'tests/ir/kv-mixed.kiln'} // '') > 0 && $out{'tests/ir/kv-mixed.kiln'} eq $out{"$dir/kv-pre.kiln"},
   'values scaled after the cache (position-major f32) give the logits of values scaled before it');

# dumps with bad cache attributes are refused at their place, with no output
my $good = Golden::slurp('tests/ir/pass-kvlayout-bf16.ir');
my @bad = (
    ['heads=0 layout="head"', qr/:60:46: error: optional attribute 'heads' is 0; leave it out/, 'heads=0'],
    ['heads=2 layout="row"', qr/%13 \(cache\): a cache's layout must be "head"/, 'an unknown layout'],
    ['heads=1 layout="head"', qr/%22 \(attention\): attention: a head-major cache has other kv heads than 2/,
     'heads that the reader does not have'],
    ['heads=2', qr/%13 \(cache\): a cache's heads are given with its layout/, 'heads without a layout'],
    ['layout="head"', qr/%13 \(cache\): a head-major cache of width 8 needs heads that divide it, not 0/,
     'a layout without heads'],
);
for my $b (@bad) {
    my ($attrs, $want, $what) = @$b;
    (my $text = $good) =~ s/heads=2 layout="head"/$attrs/ or die 'pass-kvlayout-bf16.ir changed';
    my $f = "$dir/bad.ir";
    open my $bfh, '>', $f or die $!;
    print $bfh $text;
    close $bfh;
    $r = run_cmd($kiln, 'dump', $f);
    ok($r->{rc} == 1 && $r->{err} =~ $want && $r->{out} eq '', "a dump with $what is refused")
        or diag(Golden::how($r));
}

# a bad --kv-type: usage error, nothing written
my $bad = "$dir/bad-prog";
$r = run_cmd($kiln, 'build', 'examples/llama.kiln', '--weights', $w, '-o', $bad, '--kv-type', 'f8');
ok($r->{rc} == 2 && $r->{err} =~ /--kv-type must be f32, f16 or bf16, not 'f8'/ && !-e $bad,
   '--kv-type f8: a usage error naming the value, no program') or diag(Golden::how($r));
$r = run_cmd($kiln, 'dump', 'examples/llama.kiln', '--kv-type');
ok($r->{rc} == 2 && $r->{err} =~ /--kv-type needs a value/ && $r->{out} eq '',
   '--kv-type without a value: a usage error, no dump');
done_testing();
