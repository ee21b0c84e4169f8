#!/usr/bin/perl
# Configurations the goldens do not cover (other widths, GQA ratios, RoPE modes and
# bases, eps, tied/untied, DSMoE thresholds, UniAttn groupings), checked against an
# independent pure-Perl reference of each architecture (tests/lib/RefModel.pm) that
# reads the same det-weights checkpoint: teacher-forced logits rows, greedy tokens,
# and for DSMoE the --stats active fractions and the runtime parameter --set tau.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Golden;
use RefModel;

my $dir  = Golden::tmpdir();
my $SEED = 7;
my $CTX  = 16;

# [label, spec, arch, { params passed as -D and to the reference },
#  { set => { runtime --set pairs }, tokens_of => label whose tokens to feed }]
my @cases = (
    ['dense-gqa3-half', 'examples/llama.kiln', 'dense',
     { dim => 48, heads => 3, kv_heads => 1, hidden => 100, layers => 2, vocab => 67, tied => 0,
       rope => 'half' }],
    ['dense-gqa3-interleaved', 'examples/llama.kiln', 'dense',
     { dim => 48, heads => 3, kv_heads => 1, hidden => 100, layers => 2, vocab => 67, tied => 0,
       rope => 'interleaved' }],
    ['dense-mha5-tied', 'examples/llama2c.kiln', 'dense',
     { dim => 40, heads => 5, kv_heads => 5, hidden => 72, layers => 3, vocab => 53, tied => 1,
       rope => 'interleaved' }],
    ['dense-base500-eps1e-6', 'examples/llama.kiln', 'dense',
     { dim => 24, heads => 2, kv_heads => 1, hidden => 40, layers => 2, vocab => 31, tied => 1,
       rope => 'half', rope_base => 500, eps => 1e-6 }],
    ['finedeep-3x2', 'examples/finedeep.kiln', 'finedeep',
     { dim => 36, heads => 3, kv_heads => 3, sublayers => 3, experts => 2, expert_hidden => 10,
       layers => 2, vocab => 45, tied => 1, rope => 'half' }],
    ['finedeep-untied-gqa', 'examples/finedeep.kiln', 'finedeep',
     { dim => 32, heads => 4, kv_heads => 2, sublayers => 1, experts => 3, expert_hidden => 12,
       layers => 3, vocab => 41, tied => 0, rope => 'interleaved' }],
    ['dsmoe-tau0.3', 'examples/dsmoe.kiln', 'dsmoe',
     { dim => 32, heads => 4, kv_heads => 2, experts => 4, hidden => 40, layers => 3, vocab => 60,
       tied => 0, rope => 'half', tau => 0.3 }],
    ['dsmoe-tau0.7', 'examples/dsmoe.kiln', 'dsmoe',
     { dim => 32, heads => 4, kv_heads => 2, experts => 4, hidden => 40, layers => 3, vocab => 60,
       tied => 0, rope => 'half', tau => 0.7 }],
    # built with the spec's default tau (0.5), run with --set tau=0.3: must give the
    # reference's tau 0.3 figures and the very logits of the -D tau=0.3 program
    ['dsmoe-set-tau0.3', 'examples/dsmoe.kiln', 'dsmoe',
     { dim => 32, heads => 4, kv_heads => 2, experts => 4, hidden => 40, layers => 3, vocab => 60,
       tied => 0, rope => 'half' }, { set => { tau => 0.3 }, tokens_of => 'dsmoe-tau0.3' }],
    # a threshold inside the gates' range (0.3 keeps every expert, 0.7 almost none)
    ['dsmoe-set-tau0.55', 'examples/dsmoe.kiln', 'dsmoe',
     { dim => 32, heads => 4, kv_heads => 2, experts => 4, hidden => 40, layers => 3, vocab => 60,
       tied => 0, rope => 'half' }, { set => { tau => 0.55 } }],
    ['dsmoe-tied-interleaved', 'examples/dsmoe.kiln', 'dsmoe',
     { dim => 24, heads => 3, kv_heads => 1, experts => 5, hidden => 30, layers => 2, vocab => 37,
       tied => 1, rope => 'interleaved', tau => 0.45 }],
    ['uniattn-G2-b1-e5', 'examples/uniattn.kiln', 'uniattn',
     { dim => 40, heads => 4, kv_heads => 2, hidden => 56, layers => 6, group_size => 2,
       begin => 1, end => 5, vocab => 50, tied => 1, rope => 'half' }],
    ['uniattn-G4-b0-e8', 'examples/uniattn.kiln', 'uniattn',
     { dim => 40, heads => 4, kv_heads => 2, hidden => 56, layers => 8, group_size => 4,
       begin => 0, end => 8, vocab => 50, tied => 0, rope => 'interleaved' }],
);

my %logits_text;    # label -> teacher-forced logits file content
my @summary;
for my $ci (0 .. $#cases) {
    my ($label, $spec, $arch, $p, $opt) = @{ $cases[$ci] };
    my $set = $opt->{set};
    my %ref_cfg = (arch => $arch, %$p, %{ $set // {} });
    my @defs = map { ('-D', "$_=$p->{$_}") } sort keys %$p;
    push @defs, '-D', "ctx=$CTX";
    my @run_set = map { ('--set', "$_=$set->{$_}") } sort keys %{ $set // {} };
    my $tci = $ci;
    ($tci) = grep { $cases[$_][0] eq $opt->{tokens_of} } 0 .. $#cases if $opt->{tokens_of};
    my @tokens = map { (11 * $_ * $_ + 5 * $_ + 3 * $tci + 1) % $p->{vocab} } 0 .. 5;
    my @prompt = @tokens[0 .. 2];
    my $ngen = 5;

    my $w = "$dir/$label.safetensors";
    my $prog = "$dir/$label.prog";
    SKIP: {
        Golden::make_weights(spec => $spec, seed => $SEED, defines => \@defs, out => $w,
                             label => $label) or skip "$label: no weights", 5;
        Golden::build_prog(spec => $spec, weights => $w, out => $prog, defines => \@defs,
                           label => $label) or skip "$label: no program", 4;

        my $ref = RefModel->new(RefModel::load_safetensors($w), %ref_cfg);
        my @want = map { $ref->step($_) } @tokens;

        # teacher-forced logits
        my $lf = "$dir/$label.logits";
        my @cmd = ($prog, '--tokens', join(',', @tokens), '--logits', $lf, @run_set);
        push @cmd, '--stats' if $arch eq 'dsmoe';
        my $r = Golden::run_cmd(@cmd);
        ok($r->{rc} == 0 && !$r->{sig}, "$label: teacher-forced run")
            or do { diag(Golden::how($r)); skip "$label: run failed", 3 };
        $logits_text{$label} = Golden::slurp($lf);
        my $rows = Golden::read_rows($lf) // [];
        my ($worst, $at, @fails) =
            Golden::compare_rows($rows, [ map { [$_, $want[$_]] } 0 .. $#tokens ]);
        unshift @fails, scalar(@$rows) . ' rows, want ' . scalar(@tokens) if @$rows != @tokens;
        push @summary, sprintf('%-24s worst ratio %.3g', $label, $worst);
        ok(!@fails, sprintf('%s: %d logits rows within %g of row max (worst ratio %.3g at position %s)',
                            $label, scalar @tokens, $Golden::REL_TOL, $worst, $at))
            or do { diag($_) for @fails };

        # DSMoE: per-layer active fraction from --stats
        if ($arch eq 'dsmoe') {
            my $stats = Golden::parse_stats($r->{err});
            my (@bad, @fr);
            for my $l (0 .. $p->{layers} - 1) {
                my $f = $ref->{active}[$l] / ($p->{experts} * @tokens);
                push @fr, sprintf('%.4g', $f);
                my $s = $stats->{"active_fraction[$l]"};
                if (!$s) { push @bad, "no 'stat active_fraction[$l]' line"; next }
                push @bad, "active_fraction[$l] = $s->{value}, reference $f"
                    unless $s->{value} =~ /^[-+]?[\d.]+(?:e[-+]?\d+)?$/i && abs($s->{value} - $f) <= 1e-6;
                push @bad, "active_fraction[$l]: $s->{samples} samples, want " . scalar @tokens
                    if defined $s->{samples} && $s->{samples} != @tokens;
            }
            ok(!@bad, sprintf('%s: --stats active fractions %s (closest router gate to tau: %.2g)',
                              $label, "@fr", $ref->{min_tau_gap}))
                or do { diag($_) for @bad; diag("stderr:\n$r->{err}") };
        }

        # greedy decoding: the reference's argmax chain, up to the first step with a
        # margin under the bar
        my ($chain, $cut) = RefModel::greedy_chain(RefModel->new(RefModel::load_safetensors($w), %ref_cfg), \@prompt, $ngen);
        my @chain = @$chain;
        $r = Golden::run_cmd($prog, '--tokens', join(',', @prompt), '-n', $ngen, '--temp', '0', @run_set);
        ok($r->{rc} == 0 && !$r->{sig}, "$label: greedy run")
            or do { diag(Golden::how($r)); skip "$label: greedy run failed", 1 };
        my @got = split ' ', $r->{out};
        my $same = @got == $ngen && !grep { !/^\d+$/ } @got;
        $same &&= "@got[0 .. $cut - 1]" eq "@chain[0 .. $cut - 1]" if $cut > 0;
        ok($same, "$label: greedy tokens @chain" . ($cut < $ngen ? " (first $cut: step $cut has margin < $Golden::MARGIN_MIN)" : ''))
            or do { diag("got:  $r->{out}"); diag("want: @chain") };
    }
    unlink $w, $prog;
}

# --set tau=0.3 on the default-tau program = the program built with -D tau=0.3
ok(defined $logits_text{'dsmoe-set-tau0.3'} && defined $logits_text{'dsmoe-tau0.3'}
   && $logits_text{'dsmoe-set-tau0.3'} eq $logits_text{'dsmoe-tau0.3'},
   'dsmoe: --set tau=0.3 at run time gives the logits of the program built with -D tau=0.3');

diag($_) for @summary;
done_testing();
