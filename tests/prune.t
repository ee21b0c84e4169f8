#!/usr/bin/perl
# Expert pruning (passes/prune_experts.c) and routing profiles (passes/route_stats.c, the
# program's --profile-routing):
#  - keeping every expert (--keep-experts naming all) gives bit-identical logits (DSMoE, Mixtral);
#  - a program's profile counts agree with --stats' active_fraction (DSMoE) and with the Perl
#    reference's expert selections (Mixtral);
#  - dropping experts: the dump has the router with fewer rows and no region of a dropped
#    expert, the blob's tensor bytes shrink by exactly the dropped experts' bytes (router rows
#    included), and the logits match the Perl reference with those experts never selected
#    (tests/lib/RefModel.pm, config key keep);
#  - --min-freq and --expert-budget keep the experts the profile implies;
#  - bad keep-lists and bad profiles give clear errors naming the flag or the file and key.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP ();
use List::Util qw(sum0);
use Golden;
use RefModel;

my $K = Golden::kiln();
my $dir = Golden::tmpdir();
my @tokens = (1, 5, 9, 33, 2, 7, 30, 12, 3, 4, 17, 25);
my $T = join(',', @tokens);

# The sum of the tensors' data bytes in a program's appended blob (runtime/kiln_blob.h):
# the trailer gives the blob's offset, the header its table, each entry its nbytes.
sub blob_tensor_bytes { return (Golden::blob_tensors($_[0]))[1] }

sub refused {
    my ($label, $want, @cmd) = @_;
    my $r = Golden::run_cmd(@cmd);
    ok($r->{rc} != 0 && !$r->{sig} && $r->{err} =~ $want, "$label: refused with a clear message")
        or diag(Golden::how($r));
}

sub run_ok {
    my ($label, @cmd) = @_;
    my $r = Golden::run_cmd(@cmd);
    ok($r->{rc} == 0 && !$r->{sig}, $label) or diag(Golden::how($r));
    return $r;
}

sub build {
    my ($label, $spec, $w, $out, @args) = @_;
    return run_ok("$label: kiln build", $K, 'build', $spec, '--weights', $w, '-o', $out, @args);
}

# The kept experts per layer, from a dump's routing statistics ("stat #K route l=L e=E").
sub kept_in_dump {
    my ($text) = @_;
    my %k;
    push @{ $k{$1} }, $2 while $text =~ /^stat #\d+ route l=(\d+) e=(\d+)$/mg;
    return \%k;
}

sub keep_flag {
    my ($keep) = @_;
    return '--keep-experts=' . join(';', map { "$_:" . join(',', @{ $keep->{$_} }) } sort keys %$keep);
}

# ---------------------------------------------------------------- DSMoE
my %dp = (dim => 32, heads => 2, kv_heads => 2, hidden => 64, experts => 8, layers => 2,
          vocab => 40);
my @dd = ((map { ('-D', "$_=$dp{$_}") } sort keys %dp), '-D', 'ctx=32');
my $dspec = 'examples/dsmoe.kiln';
my $dw = "$dir/dsmoe.safetensors";
Golden::make_weights(spec => $dspec, seed => 4, defines => \@dd, out => $dw, label => 'dsmoe');
build('dsmoe plain', $dspec, $dw, "$dir/d-plain", @dd);
my $all = '--keep-experts=0:' . join(',', 0 .. 7) . ';1:' . join(',', 0 .. 7);
build('dsmoe keep all', $dspec, $dw, "$dir/d-all", @dd, $all);
my $prof = "$dir/d.profile.json";
my $r = run_ok('dsmoe: run with --profile-routing and --stats', "$dir/d-plain", '--tokens', $T,
               '--logits', "$dir/d-plain.txt", '--stats', '--profile-routing', $prof);
run_ok('dsmoe keep all: run', "$dir/d-all", '--tokens', $T, '--logits', "$dir/d-all.txt");
my ($ta, $tb) = (Golden::slurp("$dir/d-plain.txt"), Golden::slurp("$dir/d-all.txt"));
ok(defined $ta && length $ta && defined $tb && $ta eq $tb,
   'dsmoe: --keep-experts naming every expert gives bit-identical logits');

# a pruned build's report: the pass ran (not the unpruned reference's record), what it
# dropped, and the measured divergence from the unpruned model
my $rep = build('dsmoe pruned, --report', $dspec, $dw, "$dir/d-rep", @dd, '--keep-experts=0:0,2,5',
           '--report');
ok($rep->{out} =~ /^  prune-experts\s+ran\s/m && $rep->{out} =~ /^    l=0: dropped experts 1, 3, 4, 6, 7 of 8/m
   && $rep->{out} =~ /^  calibration\n    keep-experts=0:0,2,5 changes the model: on \d+ calibration tokens, mean KL [0-9.e-]+ nats\/token/m,
   'dsmoe: --report of a pruned build: prune-experts ran, its drops, the divergence')
    or diag($rep->{out});

my $profile = eval { JSON::PP::decode_json(Golden::slurp($prof) // '') };
ok($profile && $profile->{model} eq 'dsmoe' && $profile->{tokens} == @tokens &&
   @{ $profile->{layers} } == 2, 'dsmoe: the profile names the model, the tokens and 2 layers')
    or diag(Golden::slurp($prof) // 'no profile');
ok(!-e "$prof.tmp", 'dsmoe: no temporary profile left behind');
{
    my $stats = Golden::parse_stats($r->{err});
    my @bad;
    for my $L (@{ $profile->{layers} // [] }) {
        my $l = $L->{layer};
        my $f = sum0(@{ $L->{experts} }) / ($dp{experts} * @tokens);
        my $s = $stats->{"active_fraction[$l]"};
        push @bad, "layer $l: profile gives $f, --stats " . ($s ? $s->{value} : 'nothing')
            unless $s && abs($s->{value} - $f) <= 1e-6 && @{ $L->{experts} } == $dp{experts};
    }
    ok(!@bad && @{ $profile->{layers} // [] } == 2,
       'dsmoe: profile counts / (tokens * experts) equal --stats active_fraction per layer')
        or diag(join("\n", @bad));
    ok($r->{err} !~ /stat route/, '--stats leaves the routing statistics out');
}

# dropping experts by a keep-list
my %keep = (0 => [0, 2, 5], 1 => [1, 2, 3, 4, 6, 7]);
my $dropped = (8 - 3) + (8 - 6);
my $de = $dp{hidden} / $dp{experts};
my $expert_bytes = 3 * $de * $dp{dim} * 4 + $dp{dim} * 4;     # gate, up, down rows + router row
build('dsmoe pruned', $dspec, $dw, "$dir/d-pruned", @dd, keep_flag(\%keep));
my ($full, $pruned) = (blob_tensor_bytes("$dir/d-plain"), blob_tensor_bytes("$dir/d-pruned"));
is($full - $pruned, $dropped * $expert_bytes,
   "dsmoe: the blob's tensors shrink by exactly $dropped experts of $expert_bytes bytes ($full -> $pruned)");
build('dsmoe pruned, bf16', $dspec, $dw, "$dir/d-pruned-bf16", @dd, keep_flag(\%keep), '--wtype', 'bf16');
build('dsmoe plain, bf16', $dspec, $dw, "$dir/d-plain-bf16", @dd, '--wtype', 'bf16');
is(blob_tensor_bytes("$dir/d-plain-bf16") - blob_tensor_bytes("$dir/d-pruned-bf16"), $dropped * $expert_bytes / 2,
   'dsmoe, bf16 weights: the blob shrinks by the dropped experts\' bytes in bf16');
# (without fold-gain, which would scale the kept rows by the norm's gain: scale_cols(rows(...)))
my $dump = run_ok('dsmoe pruned: dump', $K, 'dump', $dspec, @dd, keep_flag(\%keep),
                  '--disable-pass=fold-gain')->{out};
like($dump, qr/^tensor \@\d+ f32\[3, 32\] (?:panel )?= rows\("model\.layers\.0\.mlp\.router\.weight" f32\[8, 32\], 0:1, 2:3, 5:6\) ; router\[0\]$/m,
     'dsmoe: the dump has layer 0\'s router as its 3 kept rows');
like($dump, qr/^  %\d+ : f32\[T, 6\] = linear %\d+, %\d+ .*; l=1$/m, 'dsmoe: layer 1\'s router gives 6 logits');
my @regions = $dump =~ /; l=0 e=(\d+)$/mg;
my %seen = map { $_ => 1 } @regions;
is(join(',', sort keys %seen), '0,2,5', 'dsmoe: layer 0 has regions of experts 0, 2, 5 only');
is_deeply(kept_in_dump($dump), \%keep, 'dsmoe: routing statistics of the kept experts only');
my $rp = run_ok('dsmoe pruned: run', "$dir/d-pruned", '--tokens', $T, '--logits', "$dir/d-pruned.txt",
                '--stats');
{
    my $ref = RefModel->new(RefModel::load_safetensors($dw), arch => 'dsmoe', %dp, tied => 0,
                            rope => 'half', keep => \%keep);
    my @want = map { $ref->step($_) } @tokens;
    my $rows = Golden::read_rows("$dir/d-pruned.txt") // [];
    my ($worst, $at, @fails) = Golden::compare_rows($rows, [ map { [$_, $want[$_]] } 0 .. $#tokens ]);
    ok(@$rows == @tokens && !@fails, sprintf('dsmoe pruned: logits equal the reference with the dropped '
       . 'experts never selected (worst ratio %.3g)', $worst)) or do { diag($_) for @fails };
    isnt(Golden::slurp("$dir/d-pruned.txt"), Golden::slurp("$dir/d-plain.txt"),
         'dsmoe pruned: the logits differ from the unpruned model\'s (dropped experts did run)');
    my $stats = Golden::parse_stats($rp->{err});
    my @bad = grep { abs(($stats->{"active_fraction[$_]"}{value} // -1) -
                         $ref->{active}[$_] / ($dp{experts} * @tokens)) > 1e-6 } 0 .. 1;
    ok(!@bad, 'dsmoe pruned: active fractions equal the reference\'s') or diag($rp->{err});
}

# choosing from the profile
{
    my %want_freq;
    my $x = 0.25;
    for my $L (@{ $profile->{layers} }) {
        $want_freq{ $L->{layer} } = [ grep { $L->{experts}[$_] >= $x * $profile->{tokens} } 0 .. 7 ];
    }
    my $d = run_ok('dsmoe: dump --prune-experts --min-freq', $K, 'dump', $dspec, @dd,
                   "--prune-experts=$prof", '--min-freq', $x);
    is_deeply(kept_in_dump($d->{out}), \%want_freq, "--min-freq $x keeps the experts that ran for "
              . "at least $x of the tokens");
    my %want_budget;
    my $p = 0.6;
    for my $L (@{ $profile->{layers} }) {
        my @c = @{ $L->{experts} };
        my @order = sort { $c[$b] <=> $c[$a] || $a <=> $b } 0 .. $#c;
        my ($sum, @take) = (0);
        for my $e (@order) {
            last if @take && $sum >= $p * sum0(@c);
            push @take, $e;
            $sum += $c[$e];
        }
        $want_budget{ $L->{layer} } = [ sort { $a <=> $b } @take ];
    }
    $d = run_ok('dsmoe: dump --prune-experts --expert-budget', $K, 'dump', $dspec, @dd,
                "--prune-experts=$prof", "--expert-budget=$p");
    is_deeply(kept_in_dump($d->{out}), \%want_budget,
              "--expert-budget $p keeps the fewest experts covering $p of the firings");
}

# ---------------------------------------------------------------- Mixtral
my %mp = (dim => 32, heads => 4, kv_heads => 2, hidden => 24, layers => 2, vocab => 50,
          experts => 6, top_k => 2);
my @md = ((map { ('-D', "$_=$mp{$_}") } sort keys %mp), '-D', 'ctx=32');
my $mspec = 'examples/mixtral.kiln';
my $mw = "$dir/mixtral.safetensors";
Golden::make_weights(spec => $mspec, seed => 6, defines => \@md, out => $mw, label => 'mixtral');
build('mixtral plain', $mspec, $mw, "$dir/m-plain", @md);
build('mixtral keep all', $mspec, $mw, "$dir/m-all", @md, '--keep-experts', '1:0,1,2,3,4,5');
run_ok('mixtral: run with --profile-routing', "$dir/m-plain", '--tokens', $T, '--logits',
       "$dir/m-plain.txt", '--profile-routing', "$dir/m.json");
run_ok('mixtral keep all: run', "$dir/m-all", '--tokens', $T, '--logits', "$dir/m-all.txt");
($ta, $tb) = (Golden::slurp("$dir/m-plain.txt"), Golden::slurp("$dir/m-all.txt"));
ok(defined $ta && length $ta && defined $tb && $ta eq $tb,
   'mixtral: --keep-experts naming every expert gives bit-identical logits');
{
    my $ref = RefModel::new_arch(RefModel::load_safetensors($mw), arch => 'mixtral', %mp);
    $ref->step($_) for @tokens;
    my $mprof = eval { JSON::PP::decode_json(Golden::slurp("$dir/m.json") // '') } // {};
    my @bad;
    for my $l (0 .. 1) {
        my @w = map { $ref->{selected}[$l][$_] // 0 } 0 .. 5;
        my $got = $mprof->{layers}[$l]{experts} // [];
        push @bad, "layer $l: profile [@$got], reference [@w]" unless "@$got" eq "@w";
    }
    ok(!@bad, sprintf('mixtral: profile counts equal the reference\'s selections (closest routing '
                      . 'tie %.2g)', $ref->{min_route_gap})) or diag(join("\n", @bad));
}
my %mkeep = (0 => [1, 2, 4], 1 => [0, 5]);
build('mixtral pruned', $mspec, $mw, "$dir/m-pruned", @md, keep_flag(\%mkeep));
($full, $pruned) = (blob_tensor_bytes("$dir/m-plain"), blob_tensor_bytes("$dir/m-pruned"));
my $mexpert = 3 * $mp{hidden} * $mp{dim} * 4 + $mp{dim} * 4;
is($full - $pruned, 7 * $mexpert,
   "mixtral: the blob's tensors shrink by exactly 7 experts of $mexpert bytes ($full -> $pruned)");
run_ok('mixtral pruned: run', "$dir/m-pruned", '--tokens', $T, '--logits', "$dir/m-pruned.txt");
{
    my $ref = RefModel::new_arch(RefModel::load_safetensors($mw), arch => 'mixtral', %mp,
                                 keep => \%mkeep);
    my @want = map { $ref->step($_) } @tokens;
    my $rows = Golden::read_rows("$dir/m-pruned.txt") // [];
    my ($worst, $at, @fails) = Golden::compare_rows($rows, [ map { [$_, $want[$_]] } 0 .. $#tokens ]);
    ok(@$rows == @tokens && !@fails, sprintf('mixtral pruned: logits equal the reference routing over '
       . 'the kept experts only (worst ratio %.3g, closest tie %.2g)', $worst, $ref->{min_route_gap}))
        or do { diag($_) for @fails };
}

# ---------------------------------------------------------------- errors
my $out = "$dir/never";
my @dbuild = ($K, 'build', $dspec, '--weights', $dw, '-o', $out, @dd);
refused('keep-list without a colon', qr/--keep-experts: '0-1' is not LAYER:EXPERT/, @dbuild, '--keep-experts=0-1');
refused('keep-list layer out of range', qr/no routed layer 5 \(routed layers: 0, 1\)/, @dbuild, '--keep-experts=5:1');
refused('keep-list expert out of range', qr/layer 1 has no expert 8 \(its experts: 0-7\)/, @dbuild, '--keep-experts=1:8');
refused('keep-list layer twice', qr/layer 0 is named twice/, @dbuild, '--keep-experts=0:1;0:2');
refused('keep-list with no experts', qr/layer 0: keeping 0 of 8 experts/, @dbuild, '--keep-experts=0:');
refused('mixtral keeping fewer than top_k', qr/layer 1: keeping 1 of 6 experts, but its router selects 2/,
        $K, 'dump', $mspec, @md, '--keep-experts=1:3');
refused('a model without experts', qr/has no routed experts/, $K, 'dump', 'examples/llama.kiln', '--keep-experts=0:1');
refused('two ways to choose', qr/give one/, @dbuild, '--keep-experts=0:1', "--prune-experts=$prof", '--min-freq', '0.1');
refused('a profile without a rule', qr/needs one of --min-freq/, @dbuild, "--prune-experts=$prof");
refused('--min-freq out of range', qr/--min-freq needs a share/, @dbuild, "--prune-experts=$prof", '--min-freq', '1.5');
{
    my @ld = ('-D', 'dim=16', '-D', 'heads=2', '-D', 'kv_heads=2', '-D', 'hidden=24', '-D', 'layers=1',
              '-D', 'vocab=20', '-D', 'ctx=8');
    Golden::make_weights(spec => 'examples/llama.kiln', seed => 1, defines => \@ld,
                         out => "$dir/l.safetensors", label => 'llama');
    build('llama', 'examples/llama.kiln', "$dir/l.safetensors", "$dir/l-plain", @ld);
    refused('--profile-routing of a program without experts', qr/has no routed experts/,
            "$dir/l-plain", '--tokens', '1', '--profile-routing', "$dir/l.json");
    ok(!-e "$dir/l.json", 'no profile is written then');
}

refused('a router chain read by mean', qr/layer 1: cannot drop experts: %\d+ \(mean\) reads the router's expert axis/,
        $K, 'dump', 'tests/prune/dsmoe-mean.kiln', @dd, '--keep-experts=1:0,1');

# the pruned dump reads back byte for byte, and builds like its spec
{
    my $ir = "$dir/d-pruned.ir";
    open my $fh, '>', $ir or die "$ir: $!";
    print $fh $dump;
    close $fh;
    my $back = run_ok('dsmoe pruned: dump of the dump', $K, 'dump', $ir);
    ok($back->{out} eq $dump, 'dsmoe pruned: the dump reads back byte for byte');
    build('dsmoe pruned from its dump', $ir, $dw, "$dir/d-pruned-ir");
    run_ok('dsmoe pruned from its dump: run', "$dir/d-pruned-ir", '--tokens', $T, '--logits',
           "$dir/d-pruned-ir.txt", '--profile-routing', "$dir/d-pruned-ir.json");
    my $pp = eval { JSON::PP::decode_json(Golden::slurp("$dir/d-pruned-ir.json") // '') } // {};
    my @over = grep { $_ > @tokens } map { @{ $_->{experts} } } @{ $pp->{layers} // [] };
    ok(@{ $pp->{layers} // [] } == 2 && !@over && $pp->{tokens} == @tokens,
       'dsmoe pruned from its dump: one routing counter per expert (no count above the tokens)')
        or diag(Golden::slurp("$dir/d-pruned-ir.json"));
    is(Golden::slurp("$dir/d-pruned-ir.txt"), Golden::slurp("$dir/d-pruned.txt"),
       'dsmoe pruned: the program built from the dump gives identical logits');

    # pruning the pruned dump further names experts by the spec's numbers
    build('dsmoe pruned twice', $ir, $dw, "$dir/d-twice", '--keep-experts=0:2,5');
    build('dsmoe pruned once to the same experts', $dspec, $dw, "$dir/d-once", @dd,
          '--keep-experts=0:2,5;1:1,2,3,4,6,7');
    run_ok('dsmoe pruned twice: run', "$dir/d-twice", '--tokens', $T, '--logits', "$dir/d-twice.txt");
    run_ok('dsmoe pruned once: run', "$dir/d-once", '--tokens', $T, '--logits', "$dir/d-once.txt");
    my $tw = Golden::slurp("$dir/d-twice.txt");
    ok(defined $tw && length $tw && $tw eq (Golden::slurp("$dir/d-once.txt") // ''),
       'dsmoe: pruning a pruned dump to experts 2, 5 of layer 0 equals pruning the spec to them');
    refused('a dropped expert named again', qr/layer 0 has no expert 1 \(its experts: 0, 2, 5\)/,
            $K, 'dump', $ir, '--keep-experts=0:1');
}

my %bad = (
    'malformed.json' => ['{"model": "dsmoe", "tokens": 12, "layers": [', qr/malformed\.json:\d+:\d+: error: not a routing profile/],
    'not-object.json' => ['[1, 2]', qr/not-object\.json: error: a routing profile is a JSON object/],
    'model.json' => ['{"model": "mixtral", "tokens": 12, "layers": []}', qr/model\.json: error: 'model': the profile is of 'mixtral', the model is 'dsmoe'/],
    'tokens.json' => ['{"tokens": 0, "layers": []}', qr/tokens\.json: error: 'tokens'/],
    'count.json' => ['{"tokens": 12, "layers": [{"layer": 0, "experts": [1, 2, 3]}, {"layer": 1, "experts": [1,1,1,1,1,1,1,1]}]}',
                     qr/count\.json: error: 'layers\[0\]\.experts': 3 counts, but layer 0 has 8 experts/],
    'layer.json' => ['{"tokens": 12, "layers": [{"layer": 4, "experts": [1,1,1,1,1,1,1,1]}]}',
                     qr/layer\.json: error: 'layers\[0\]\.layer': the model has no routed layer 4/],
    'missing.json' => ['{"tokens": 12, "layers": [{"layer": 0, "experts": [1,1,1,1,1,1,1,1]}]}',
                       qr/missing\.json: error: 'layers': layer 1 of the model is routed, but the profile has no entry/],
    'negative.json' => ['{"tokens": 12, "layers": [{"layer": 0, "experts": [1,1,-1,1,1,1,1,1]}, {"layer": 1, "experts": [1,1,1,1,1,1,1,1]}]}',
                        qr/negative\.json: error: 'layers\[0\]\.experts\[2\]': needs a count in 0\.\.12/],
);
for my $name (sort keys %bad) {
    my $f = "$dir/$name";
    open my $fh, '>', $f or die "$f: $!";
    print $fh $bad{$name}[0];
    close $fh;
    refused("profile $name", $bad{$name}[1], @dbuild, "--prune-experts=$f", '--min-freq', '0.1');
}
refused('a profile that does not exist', qr/nothere\.json.*error/, @dbuild, "--prune-experts=$dir/nothere.json", '--min-freq', '0.1');
ok(!-e $out, 'no program is written after a refusal');

done_testing();
