#!/usr/bin/perl
# Per-head RoPE bases end to end: tests/ir/rope-heads.in is a spec-less dump of a one-layer
# llama (examples/llama.kiln -D layers=1 dim=16 heads=2 kv_heads=1 ...) whose rope lines
# were rewritten by hand into rope_heads (query heads turn by 10000 and 500000, the one kv
# head by 10000). The test builds it with `kiln build FILE.ir` and checks that
#  (a) with every base 10000 the logits equal the plain-rope program's, bit for bit;
#  (b) with the different bases they differ;
#  (c) they match RefModel (pure Perl, double precision) with the same per-head bases;
#  (d) --batch 1 gives the same logits as the default block size.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Golden qw(run_cmd);
use RefModel;

my $kiln = Golden::kiln();
my $dir  = Golden::tmpdir();
my @D = map { ('-D', $_) } qw(layers=1 dim=16 heads=2 kv_heads=1 hidden=24 vocab=20 ctx=8);
my @prompt = (1, 5, 9, 3, 17, 2, 11, 0);
my $tokens = join ',', @prompt;

my $ir = Golden::slurp('tests/ir/rope-heads.in');
ok(defined $ir && $ir =~ /rope_heads %\d+ heads=2 rot=8 bases=\[10000,500000\]/,
   'tests/ir/rope-heads.in has per-head bases') or BAIL_OUT('no tests/ir/rope-heads.in');
(my $same = $ir) =~ s/bases=\[10000,500000\]/bases=[10000,10000]/;
my $same_ir = "$dir/same.ir";
open my $fh, '>', $same_ir or die "$same_ir: $!";
print $fh $same;
close $fh;

my $w = "$dir/w.safetensors";
Golden::make_weights(spec => 'examples/llama.kiln', defines => \@D, seed => 3, out => $w,
                     label => 'llama 1 layer') or BAIL_OUT('no weights');
my %prog = (plain => "$dir/plain", heads => "$dir/heads", same => "$dir/same");
Golden::build_prog(spec => 'examples/llama.kiln', weights => $w, out => $prog{plain},
                   defines => \@D, label => 'plain rope') or BAIL_OUT('no build');
Golden::build_prog(spec => 'tests/ir/rope-heads.in', weights => $w, out => $prog{heads},
                   label => 'rope_heads [10000,500000]') or BAIL_OUT('no build');
Golden::build_prog(spec => $same_ir, weights => $w, out => $prog{same},
                   label => 'rope_heads [10000,10000]') or BAIL_OUT('no build');

# logits text of program $p (every prompt row), extra arguments after
sub logits {
    my ($p, @extra) = @_;
    my $r = run_cmd($p, '--tokens', $tokens, '--logits', '-', @extra);
    return undef if $r->{rc} != 0 || $r->{sig};
    return $r->{out};
}
my %out = map { $_ => logits($prog{$_}) } keys %prog;
ok(defined $out{$_}, "$_: runs") for sort keys %prog;
is($out{same}, $out{plain}, '(a) all bases 10000: the logits equal plain rope\'s exactly');
isnt($out{heads}, $out{plain}, '(b) bases [10000, 500000]: the logits differ');
my @rows = map { [ split ' ' ] } grep { /\S/ } split /\n/, $out{heads} // '';
is(scalar @rows, scalar @prompt, 'one logits row per prompt token');
is(logits($prog{heads}, '--batch', 1), $out{heads}, '(d) --batch 1 gives the same logits');
is(logits($prog{heads}, '--batch', 3), $out{heads}, '(d) --batch 3 gives the same logits');

# (c) the reference with RoPE per head: query heads 10000 and 500000, the kv head 10000
{
    no warnings 'redefine';
    my @qbases = (10000, 500000);
    local *RefModel::rope = sub {
        my ($v, $n_heads, $dh, $pos, $base, $mode) = @_;
        my @b = $n_heads == 2 ? @qbases : ($base) x $n_heads;
        for my $h (0 .. $n_heads - 1) {
            my @part = @$v[ $h * $dh .. ($h + 1) * $dh - 1 ];
            RefModel::rope_partial(\@part, 1, $dh, $pos, $b[$h], $mode, $dh);
            @$v[ $h * $dh .. ($h + 1) * $dh - 1 ] = @part;
        }
        return $v;
    };
    my $m = RefModel->new(RefModel::load_safetensors($w), arch => 'dense', dim => 16, heads => 2,
                          kv_heads => 1, layers => 1, rope => 'half', tied => 1);
    my @want = map { [ $_, $m->step($prompt[$_]) ] } 0 .. $#prompt;
    my ($worst, $at, @fails) = Golden::compare_rows(\@rows, \@want);
    ok(!@fails, sprintf('(c) the logits match the reference with per-head bases (worst %.3g at %s)',
                        $worst, $at)) or diag(join "\n", @fails);
}
# the reference really tells the bases apart: plain rope's logits are not within tolerance
{
    my $m = RefModel->new(RefModel::load_safetensors($w), arch => 'dense', dim => 16, heads => 2,
                          kv_heads => 1, layers => 1, rope => 'half', tied => 1);
    my @want = map { [ $_, $m->step($prompt[$_]) ] } 0 .. $#prompt;
    my ($worst, $at, @fails) = Golden::compare_rows(\@rows, \@want);
    ok(scalar @fails, '(c) ... and not the reference with one base') ;
}

# From a spec: a list parameter as rope's base gives rope_heads; equal bases give the plain
# rope program's logits exactly, other bases other logits, the same for every --batch.
{
    my $src = Golden::slurp('examples/llama.kiln');
    $src =~ s/param eps = 1e-5, rope_base = 10000, rope = "half"/param eps = 1e-5, rope = "half"\n  param rope_base = [10000, 10000, 10000, 10000]/
        or die 'examples/llama.kiln changed: update this test';
    open my $fh, '>', "$dir/listbase.kiln" or die;
    print $fh $src;
    close $fh;
    my @mha = ('-D', 'kv_heads=4', '-D', 'layers=2');
    my $wl = "$dir/llama-mha.safetensors";
    my $r = run_cmd($kiln, 'weights', 'examples/llama.kiln', @mha, '--seed', 3, '-o', $wl);
    ok($r->{rc} == 0, 'spec: weights') or diag(Golden::how($r));
    my %lf;
    for my $case (['plain', 'examples/llama.kiln'], ['equal', "$dir/listbase.kiln"],
                  ['other', "$dir/listbase.kiln", '-D', 'rope_base=10000,20000,40000,500000']) {
        my ($tag, $spec, @d) = @$case;
        $r = run_cmd($kiln, 'build', $spec, @mha, @d, '--weights', $wl, '-o', "$dir/s-$tag");
        ok($r->{rc} == 0, "spec: build ($tag)") or diag(Golden::how($r));
        for my $b (1, 64) {
            $r = run_cmd("$dir/s-$tag", '--tokens', '3,1,4,1,5,9,2,6,5,3', '--batch', $b,
                         '--logits', "$dir/s-$tag-$b.txt");
            ok($r->{rc} == 0, "spec: run ($tag, --batch $b)") or diag(Golden::how($r));
            $lf{"$tag-$b"} = Golden::slurp("$dir/s-$tag-$b.txt") // '';
        }
    }
    my $d = run_cmd($kiln, 'dump', "$dir/listbase.kiln", @mha);
    ok($d->{out} =~ /rope_heads .*bases=\[10000,10000,10000,10000\]/, 'spec: a list base is a rope_heads');
    ok($lf{'equal-64'} ne '' && $lf{'equal-64'} eq $lf{'plain-64'}, 'spec: equal bases give plain rope\'s logits exactly');
    ok($lf{'other-64'} ne $lf{'plain-64'}, 'spec: other bases give other logits');
    ok($lf{'other-1'} eq $lf{'other-64'} && $lf{'equal-1'} eq $lf{'equal-64'}, 'spec: the same for --batch 1 and 64');
}
done_testing();
