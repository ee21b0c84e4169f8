#!/usr/bin/perl
# Softmax sharing applied by the compiler (passes/share_softmax.c, --share-softmax=G,b,e)
# and the calibration that measures what it does to the logits (codegen/calib.c):
# the reusers' IR has no scores, softmax, Q or K cache; the program's logits equal an
# independent Perl computation (RefModel's UniAttn with zero compensation weights); the
# reported KL and top-1 agreement equal those computed here from both programs' logits;
# G=1 is the plain model bit for bit; --calib and --share-softmax errors are clear.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use List::Util qw(max sum0);
use Golden qw(run_cmd);
use RefModel;

my $kiln = Golden::kiln();
my $dir  = Golden::tmpdir();

my %p = (dim => 32, heads => 4, kv_heads => 2, hidden => 48, layers => 5, vocab => 40,
         ctx => 24, tied => 1, rope => 'half');
my @defs = map { ('-D', "$_=$p{$_}") } sort keys %p;
my ($G, $B, $E) = (2, 1, 5);          # leaders 0, 1, 3; reusers 2 (of 1) and 4 (of 3)
my %leader_of = (2 => 1, 4 => 3);
my @leaders = (0, 1, 3);

sub fails_cleanly {
    my ($r, $pattern, $label) = @_;
    ok(!$r->{sig} && $r->{rc} != 0 && $r->{err} =~ $pattern, $label) or diag(Golden::how($r));
}

# ---------------------------------------------------------------- the IR

# layer => { op => count, ..., apply_reads => %N, softmax => %N }; weights =>
# { decl => 1 } for the weight views (their comment is the declaration, wq[3], no scope)
sub layers_of_dump {
    my ($text) = @_;
    my %L;
    for my $line (split /\n/, $text) {
        next unless $line =~ /^  %(\d+) : \S+(?: \S+)*? = (\w+)(.*?)\s+; (.*)$/;
        my ($id, $op, $rest, $comment) = ($1, $2, $3, $4);
        $L{weights}{$comment} = 1 if $op eq 'weight';
        my ($l) = $comment =~ /(?:^| )l=(\d+)/ or next;
        $L{$l}{$op}++;
        $L{$l}{k_cache}++ if $op eq 'cache' && $comment =~ /^k_cache /;
        $L{$l}{softmax} = $id if $op eq 'softmax';
        $L{$l}{apply_reads} = $1 if $op eq 'attn_apply' && $rest =~ /^ %(\d+)/;
    }
    return \%L;
}

# (fuse-linear stacks Q, K and V into one unlabelled view: left out to see each weight)
my $r = run_cmd($kiln, 'dump', 'examples/llama.kiln', @defs, "--share-softmax=$G,$B,$E",
                '--disable-pass=fuse-linear');
ok($r->{rc} == 0 && !$r->{sig}, 'dump --share-softmax') or diag(Golden::how($r));
my $L = layers_of_dump($r->{out});
for my $l (sort keys %leader_of) {
    my $x = $L->{$l} // {};
    my @has = grep { $x->{$_} } qw(attn_scores softmax k_cache);
    push @has, grep { $L->{weights}{$_} } ("wq[$l]", "wk[$l]");
    ok(!@has && $x->{attn_apply} && ($x->{cache} // 0) == 1,
       "reuser l=$l: no attn_scores, softmax, Q, K or K cache; one cache (V)")
        or diag("l=$l still has: @has; caches " . ($x->{cache} // 0));
    ok(defined $x->{apply_reads} && defined $L->{$leader_of{$l}}{softmax}
       && $x->{apply_reads} == $L->{$leader_of{$l}}{softmax},
       "reuser l=$l: attn_apply reads the softmax of l=$leader_of{$l}");
}
my %reused = map { $_ => 1 } values %leader_of;
for my $l (@leaders) {
    my $x = $L->{$l} // {};
    # a leader nobody reuses has its attention fused (passes/fuse_attn.c): no softmax left
    my $attn = $reused{$l} ? $x->{attn_scores} && $x->{softmax} : $x->{attention} && !$x->{softmax};
    ok($attn && $x->{k_cache} && $L->{weights}{"wq[$l]"} && $L->{weights}{"wk[$l]"},
       "leader l=$l keeps its Q, K, K cache, " . ($reused{$l} ? 'scores and softmax' : 'fused attention'));
}
unlike($r->{err}, qr/never read/, 'no unread-weight warning for the reusers\' Q and K');
like($r->{err}, qr/share-softmax=2,1,5 changes the model; dump has no weights, so no divergence is measured/,
     'dump says that no divergence is measured');

# without the flag the pass changes nothing (run by name: the pipeline skips it unasked)
$r = run_cmd($kiln, 'dump', 'examples/llama.kiln', @defs, '--passes', 'widen,share-softmax');
my $r2 = run_cmd($kiln, 'dump', 'examples/llama.kiln', @defs, '--passes', 'widen');
ok($r->{rc} == 0 && $r->{out} eq $r2->{out}, 'not asked: share-softmax leaves the IR as it is');

# ---------------------------------------------------------------- programs

my $w = "$dir/m.safetensors";
SKIP: {
    Golden::make_weights(spec => 'examples/llama.kiln', seed => 11, defines => \@defs, out => $w,
                         label => 'share') or skip 'no weights', 14;
    my @tokens = map { (5 * $_ * $_ + 3 * $_ + 2) % $p{vocab} } 0 .. 19;
    my $calib = "$dir/calib.txt";
    open my $fh, '>', $calib or die "$calib: $!";
    print $fh join(', ', @tokens[0 .. 9]), "\n", join(' ', @tokens[10 .. 19]), "\n";
    close $fh;

    my %prog = (plain => "$dir/plain", shared => "$dir/shared", g1 => "$dir/g1");
    my %flags = (plain => [], shared => ["--share-softmax=$G,$B,$E", '--calib', $calib],
                 g1 => ['--share-softmax=1,0,5', '--calib', $calib]);
    my (%err, %rows, %text);
    for my $k (qw(plain shared g1)) {
        my $b = run_cmd($kiln, 'build', 'examples/llama.kiln', @defs, '--weights', $w,
                        '-o', $prog{$k}, @{ $flags{$k} });
        ok($b->{rc} == 0 && !$b->{sig} && -x $prog{$k}, "build $k") or diag(Golden::how($b));
        $err{$k} = $b->{err};
        my $lf = "$dir/$k.logits";
        my $run = run_cmd($prog{$k}, '--tokens', join(',', @tokens), '--logits', $lf);
        ok($run->{rc} == 0 && !$run->{sig}, "run $k") or diag(Golden::how($run));
        $rows{$k} = Golden::read_rows($lf) // [];
        $text{$k} = Golden::slurp($lf) // '';
    }

    # independent check: the same tokens through the Perl UniAttn reference, whose reusers
    # read their leader's probabilities, with zero compensation weights (v2_proj)
    my $wt = RefModel::load_safetensors($w);
    for my $l (keys %leader_of) {
        $wt->{"model.layers.$l.self_attn.v2_proj.weight"} =
            { shape => [$p{dim}, $p{dim}], rows => [ map { [ (0) x $p{dim} ] } 1 .. $p{dim} ] };
    }
    my $ref = RefModel->new($wt, arch => 'uniattn', group_size => $G, begin => $B, end => $E,
                            map { $_ => $p{$_} } qw(dim heads kv_heads layers tied rope));
    my @want = map { $ref->step($_) } @tokens;
    my ($worst, $at, @fails) = Golden::compare_rows($rows{shared}, [ map { [$_, $want[$_]] } 0 .. $#tokens ]);
    push @fails, scalar(@{ $rows{shared} }) . ' rows' if @{ $rows{shared} } != @tokens;
    ok(!@fails, sprintf('shared program = Perl reference with shared probabilities '
                        . '(worst ratio %.3g at position %s)', $worst, $at))
        or do { diag($_) for @fails };
    # ... and the check tells sharing apart: the plain program is outside the tolerance
    my $plain_ratio = Golden::max_ratio($rows{plain}, \@want);
    ok($plain_ratio > 10 * $Golden::REL_TOL,
       sprintf('the plain program is not the shared reference (worst ratio %.3g)', $plain_ratio));

    # the report against KL and agreement computed here from both programs' logits
    my ($kl_sum, $agree) = (0, 0);
    for my $t (0 .. $#tokens) {
        my ($a, $b) = ($rows{plain}[$t], $rows{shared}[$t]);
        my @lp = log_softmax(@$a);
        my @lq = log_softmax(@$b);
        $kl_sum += sum0(map { exp($lp[$_]) * ($lp[$_] - $lq[$_]) } 0 .. $#lp);
        $agree++ if argmax(@$a) == argmax(@$b);
    }
    my $kl = $kl_sum / @tokens;
    my ($got_kl, $got_agree, $got_n) =
        $err{shared} =~ /on 20 calibration tokens, mean KL (\S+) nats\/token .*top-1 agreement \S+% \((\d+)\/(\d+)\)/;
    ok(defined $got_kl && $kl > 0 && abs($got_kl - $kl) <= 1e-6 * $kl,
       sprintf('reported mean KL %s = %.9g computed from the logits (relative 1e-6)',
               $got_kl // '-', $kl)) or diag("stderr: $err{shared}");
    ok(defined $got_agree && $got_agree == $agree && $got_n == @tokens,
       "reported top-1 agreement $agree/" . scalar(@tokens)) or diag("stderr: $err{shared}");

    # G=1: every layer leads
    ok($text{g1} ne '' && $text{g1} eq $text{plain}, 'G=1: logits bit-identical to the plain build');
    like($err{g1}, qr/share-softmax=1,0,5 changes the model: on 20 calibration tokens, mean KL 0 nats\/token \(max 0\), top-1 agreement 100\.0% \(20\/20\)/,
         'G=1: reported KL 0 and agreement 100%');

    # the default calibration sequence: 24 tokens (ctx) here
    my $d = run_cmd($kiln, 'build', 'examples/llama.kiln', @defs, '--weights', $w, '-o',
                    "$dir/default", "--share-softmax=$G,$B,$E");
    ok($d->{rc} == 0 && $d->{err} =~ /on 24 calibration tokens, mean KL/,
       'default calibration: min(64, ctx) tokens') or diag(Golden::how($d));

    # --calib errors: named file and place, non-zero exit, no program
    my @bad = (['bad-token', "1, 2, x7, 4\n", qr/bad-token\.txt:1:7: error: 'x7' is not a token id/],
               ['out-of-vocab', "1 2\n3 40\n", qr/out-of-vocab\.txt:2:3: error: token 40 \(calibration token 4\) is outside the vocabulary \[0, 40\)/],
               ['negative', "-1\n", qr/negative\.txt:1:1: error: token -1 .* outside the vocabulary/],
               ['empty', " ,\n\n", qr/empty\.txt: error: no calibration tokens/],
               ['too-many', join(',', (1) x 25) . "\n", qr/too-many\.txt:1:49: error: more than 24 calibration tokens: the model's context holds 24/]);
    for my $case (@bad) {
        my ($name, $content, $pattern) = @$case;
        my $f = "$dir/$name.txt";
        open my $cf, '>', $f or die "$f: $!";
        print $cf $content;
        close $cf;
        my $out = "$dir/bad-$name";
        my $b = run_cmd($kiln, 'build', 'examples/llama.kiln', @defs, '--weights', $w, '-o', $out,
                        "--share-softmax=$G,$B,$E", '--calib', $f);
        fails_cleanly($b, $pattern, "--calib $name: a clear error");
        ok(!-e $out, "--calib $name: no program written");
    }
    fails_cleanly(run_cmd($kiln, 'build', 'examples/llama.kiln', @defs, '--weights', $w, '-o',
                          "$dir/nc", '--calib', "$dir/nonexistent.txt", "--share-softmax=$G,$B,$E"),
                  qr{nonexistent\.txt: error: cannot read}, '--calib of a missing file');
    fails_cleanly(run_cmd($kiln, 'build', 'examples/llama.kiln', @defs, '--weights', $w, '-o',
                          "$dir/nc", '--calib', $calib),
                  qr/--calib .*none is asked for/, '--calib without a model-changing pass');
    fails_cleanly(run_cmd($kiln, 'build', 'examples/llama.kiln', @defs, '--weights', $w, '-o',
                          "$dir/past", '--share-softmax=2,1,6'),
                  qr/--share-softmax=2,1,6: the end 6 is past the last layer \(the model has 5 layers/,
                  'build: the end past the last layer');
    ok(!-e "$dir/past", 'no program after a refused --share-softmax');
}

# a llama2.c file must be read whole by the spec: the unchanged model is what reads it
my $bin = "$dir/l2c.bin";
SKIP: {
    Golden::make_weights(spec => 'examples/llama2c.kiln', format => 'llama2c', seed => 4,
                         defines => \@defs, out => $bin, label => 'share llama2c')
        or skip 'no llama2.c weights', 1;
    my $b = run_cmd($kiln, 'build', 'examples/llama2c.kiln', '--weights', $bin, '-o',
                    "$dir/l2c", "--share-softmax=$G,$B,$E");
    ok($b->{rc} == 0 && -x "$dir/l2c" && $b->{err} =~ /on 24 calibration tokens, mean KL/,
       'llama2.c checkpoint: builds with the reusers\' Q and K unread, and measures')
        or diag(Golden::how($b));
}

# ---------------------------------------------------------------- refusals

fails_cleanly(run_cmd($kiln, 'dump', 'examples/llama.kiln', @defs, '--share-softmax=0,1,2'),
              qr/--share-softmax=0,1,2: the group size G must be at least 1/, 'G = 0 refused');
fails_cleanly(run_cmd($kiln, 'dump', 'examples/llama.kiln', @defs, '--share-softmax=2,3,1'),
              qr/--share-softmax=2,3,1: the layers must satisfy 0 <= b <= e/, 'b > e refused');
fails_cleanly(run_cmd($kiln, 'dump', 'examples/llama.kiln', @defs, '--share-softmax=2,-1,3'),
              qr/0 <= b <= e/, 'b < 0 refused');
fails_cleanly(run_cmd($kiln, 'dump', 'examples/llama.kiln', @defs, '--share-softmax=2,1,3',
                      '--calib', 'x.txt'),
              qr/--calib applies to build .*not to 'dump'/, '--calib on dump refused');
fails_cleanly(run_cmd($kiln, 'dump', 'examples/llama.kiln', @defs, '--share-softmax=2,1'),
              qr/--share-softmax needs G,b,e/, 'two numbers refused');
# UniAttn's own reusers have no softmax to give up
fails_cleanly(run_cmd($kiln, 'dump', 'examples/uniattn.kiln', '-D', 'layers=4', '--share-softmax=2,2,4'),
              qr/--share-softmax: layer l=3 has no attention of its own/,
              'a layer without an attention of its own is named');
# a leader whose probabilities have another capacity than the reuser's
my @defs2 = map { ('-D', "$_=" . ($_ eq 'layers' ? 2 : $p{$_})) } sort keys %p;
$r = run_cmd($kiln, 'dump', 'examples/llama.kiln', @defs2, '--after', 'widen');
my $edited = join "\n", map {
    my $line = $_;
    if ($line =~ /; (?:\S+ )?l=1$/) { $line =~ s/S<=24/S<=16/g; $line =~ s/capacity=24/capacity=16/ }
    $line
} split /\n/, $r->{out};
my $ir = "$dir/capacity.ir";
open my $ifh, '>', $ir or die "$ir: $!";
print $ifh "$edited\n";
close $ifh;
$r = run_cmd($kiln, 'dump', $ir);
ok($r->{rc} == 0, 'the edited dump (layer 1 with capacity 16) verifies') or diag(Golden::how($r));
fails_cleanly(run_cmd($kiln, 'dump', $ir, '--passes', 'share-softmax', '--share-softmax=2,0,2'),
              qr/layer l=1 needs probabilities f32\[T, 4, S<=16\] \(heads, capacity\), but the softmax of its leader l=0 is f32\[T, 4, S<=24\]/,
              'a leader with another capacity is refused, naming both layers');

done_testing();

sub log_softmax {
    my @x = @_;
    my $m = max(@x);
    my $lz = $m + log(sum0(map { exp($_ - $m) } @x));
    return map { $_ - $lz } @x;
}

sub argmax {
    my @x = @_;
    my $b = 0;
    $x[$_] > $x[$b] and $b = $_ for 1 .. $#x;
    return $b;
}
