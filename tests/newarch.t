#!/usr/bin/perl
# GPT-2 (learned position embeddings via forward(token, pos), LayerNorm, biases, GELU, no
# RoPE), the GPT-J-style parallel block with partial rotary embeddings (rope_partial) and
# Mixtral-style top-k routed experts (topk), each in several small configurations, checked
# against an independent double-precision Perl reference (RefModel::new_arch) that reads the
# same det-weights checkpoint: teacher-forced logits rows, greedy tokens and, for Mixtral,
# the --stats top_weight figures.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Golden;
use RefModel;
use JSON::PP ();

my $dir = Golden::tmpdir();
my $CTX = 16;

# [label, spec, arch, seed, { params: -D and reference config }, number of tokens,
#  optional [regexp, factor]: more checkpoint tensors to scale (after @SHARPEN)]
my @cases = (
    ['gpt2-h2', 'examples/gpt2.kiln', 'gpt2', 3,
     { dim => 32, heads => 2, hidden => 64, layers => 2, vocab => 50 }, 6],
    ['gpt2-h4', 'examples/gpt2.kiln', 'gpt2', 4,
     { dim => 48, heads => 4, hidden => 72, layers => 2, vocab => 64 }, 6],
    # every position of the context: the last row of wpe is read
    ['gpt2-h4-fullctx', 'examples/gpt2.kiln', 'gpt2', 5,
     { dim => 24, heads => 4, hidden => 40, layers => 2, vocab => 37 }, $CTX],
    ['gptp-rot-full', 'examples/gpt-parallel.kiln', 'gptp', 3,
     { dim => 48, heads => 4, kv_heads => 4, hidden => 64, layers => 2, vocab => 61,
       rotary_dim => 12 }, 6],
    ['gptp-rot4-gqa', 'examples/gpt-parallel.kiln', 'gptp', 4,
     { dim => 48, heads => 4, kv_heads => 2, hidden => 64, layers => 2, vocab => 61,
       rotary_dim => 4 }, 6],
    ['gptp-rot6-half', 'examples/gpt-parallel.kiln', 'gptp', 5,
     { dim => 40, heads => 2, kv_heads => 1, hidden => 48, layers => 2, vocab => 45,
       rotary_dim => 6, rope => 'half', rope_base => 500 }, 6],
    ['mixtral-e4-k1', 'examples/mixtral.kiln', 'mixtral', 3,
     { dim => 32, heads => 4, kv_heads => 2, hidden => 24, layers => 2, vocab => 50,
       experts => 4, top_k => 1 }, 6],
    ['mixtral-e6-k3', 'examples/mixtral.kiln', 'mixtral', 4,
     { dim => 48, heads => 4, kv_heads => 1, hidden => 20, layers => 2, vocab => 64,
       experts => 6, top_k => 3, tied => 1, rope => 'interleaved' }, 6],
    ['mixtral-e5-k2', 'examples/mixtral.kiln', 'mixtral', 5,
     { dim => 40, heads => 2, kv_heads => 2, hidden => 16, layers => 2, vocab => 41,
       experts => 5, top_k => 2, rope_base => 10000 }, 6],
    # top_k = experts: every expert runs, a dense softmax-weighted mixture
    ['mixtral-e3-k3', 'examples/mixtral.kiln', 'mixtral', 6,
     { dim => 24, heads => 2, kv_heads => 1, hidden => 12, layers => 2, vocab => 33,
       experts => 3, top_k => 3 }, 6],
    # zero routers: all logits tie, so topk takes the lowest indices (experts 0 and 1)
    # with equal weights 1/2
    ['mixtral-ties', 'examples/mixtral.kiln', 'mixtral', 7,
     { dim => 32, heads => 4, kv_heads => 2, hidden => 16, layers => 2, vocab => 40,
       experts => 4, top_k => 2 }, 6, [qr/\.block_sparse_moe\.gate\.weight$/, 0]],
);

# kiln weights fills every tensor with small values (|w| <= 0.1, norm gains included), which
# leaves attention almost uniform: positions would hardly matter. Every case multiplies the
# norm gains by 16 and the query/key projections by 3, so that the scores spread over a few
# units and RoPE, partial RoPE and the position embeddings change the logits clearly (GPT-2's
# c_attn holds q, k and v together: all three are scaled).
my @SHARPEN = ([qr/(?:ln_[12]|input_layernorm|post_attention_layernorm)\.weight$/, 16],
               [qr/\.(?:(?:q|k)_proj|c_attn)\.weight$/, 3]);

# Multiply the F32 tensors of a safetensors file whose names match $re by $factor, in place;
# returns how many tensors matched.
sub scale_tensors {
    my ($file, $re, $factor) = @_;
    open my $fh, '+<:raw', $file or die "$file: $!";
    read $fh, my $len, 8;
    my ($lo, $hi) = unpack 'V V', $len;
    read $fh, my $hdr, $lo + $hi * 4294967296;
    my $h = JSON::PP::decode_json($hdr);
    my $n = 0;
    for my $name (grep { $_ ne '__metadata__' && $_ =~ $re } keys %$h) {
        die "$file: $name is not F32" unless $h->{$name}{dtype} eq 'F32';
        my ($b, $e) = @{ $h->{$name}{data_offsets} };
        seek $fh, 8 + length($hdr) + $b, 0;
        read $fh, my $data, $e - $b;
        seek $fh, 8 + length($hdr) + $b, 0;
        print $fh pack 'f<*', map { $_ * $factor } unpack 'f<*', $data;
        $n++;
    }
    close $fh or die "$file: $!";
    return $n;
}

my @summary;
for my $ci (0 .. $#cases) {
    my ($label, $spec, $arch, $seed, $p, $ntok, $more) = @{ $cases[$ci] };
    my @defs = (map({ ('-D', "$_=$p->{$_}") } sort keys %$p), '-D', "ctx=$CTX");
    my @tokens = map { (11 * $_ * $_ + 5 * $_ + 3 * $ci + 1) % $p->{vocab} } 0 .. $ntok - 1;
    my @prompt = @tokens[0 .. 2];
    my $ngen = 5;
    my %cfg = (arch => $arch, %$p);

    my $w = "$dir/$label.safetensors";
    my $prog = "$dir/$label.prog";
    SKIP: {
        Golden::make_weights(spec => $spec, seed => $seed, defines => \@defs, out => $w,
                             label => $label) or skip "$label: no weights", 6;
        my @scaled = map { scale_tensors($w, @$_) } @SHARPEN, $more // ();
        ok(!grep({ !$_ } @scaled), "$label: scaled tensors (@scaled)");
        Golden::build_prog(spec => $spec, weights => $w, out => $prog, defines => \@defs,
                           label => $label) or skip "$label: no program", 4;
        my $wt = RefModel::load_safetensors($w);
        my $ref = RefModel::new_arch($wt, %cfg);
        my @want = map { $ref->step($_) } @tokens;

        # teacher-forced logits
        my $lf = "$dir/$label.logits";
        my @cmd = ($prog, '--tokens', join(',', @tokens), '--logits', $lf);
        push @cmd, '--stats' if $arch eq 'mixtral';
        my $r = Golden::run_cmd(@cmd);
        ok($r->{rc} == 0 && !$r->{sig}, "$label: teacher-forced run")
            or do { diag(Golden::how($r)); skip "$label: run failed", 3 };
        my $rows = Golden::read_rows($lf) // [];
        my ($worst, $at, @fails) =
            Golden::compare_rows($rows, [ map { [$_, $want[$_]] } 0 .. $#tokens ]);
        unshift @fails, scalar(@$rows) . ' rows, want ' . scalar(@tokens) if @$rows != @tokens;
        my $extra = $arch eq 'mixtral' ? sprintf(', closest routing tie %.2g', $ref->{min_route_gap}) : '';
        push @summary, sprintf('%-18s worst ratio %.3g%s', $label, $worst, $extra);
        ok(!@fails, sprintf('%s: %d logits rows within %g of row max (worst ratio %.3g at position %s)',
                            $label, scalar @tokens, $Golden::REL_TOL, $worst, $at))
            or do { diag($_) for @fails };

        # Mixtral: stat top_weight[l] = mean over the steps of the largest routing weight
        if ($arch eq 'mixtral') {
            my $stats = Golden::parse_stats($r->{err});
            my (@bad, @tw);
            for my $l (0 .. $p->{layers} - 1) {
                my $f = $ref->{top_weight}[$l] / @tokens;
                push @tw, sprintf('%.4g', $f);
                my $s = $stats->{"top_weight[$l]"};
                if (!$s) { push @bad, "no 'stat top_weight[$l]' line"; next }
                push @bad, "top_weight[$l] = $s->{value}, reference $f"
                    unless $s->{value} =~ /^[-+]?[\d.]+(?:e[-+]?\d+)?$/i && abs($s->{value} - $f) <= 1e-5;
                push @bad, "top_weight[$l]: $s->{samples} samples, want " . scalar @tokens
                    if defined $s->{samples} && $s->{samples} != @tokens;
            }
            my @load = map { my $l = $_; join '/', map { $ref->{selected}[$l][$_] // 0 } 0 .. $p->{experts} - 1 }
                       0 .. $p->{layers} - 1;
            ok(!@bad, "$label: --stats top_weight @tw (expert selections per layer: @load)")
                or do { diag($_) for @bad; diag("stderr:\n$r->{err}") };
        }

        # greedy decoding: the reference's argmax chain, up to the first step whose margin
        # is under the bar
        my ($chain, $cut) = RefModel::greedy_chain(RefModel::new_arch($wt, %cfg), \@prompt, $ngen);
        my @chain = @$chain;
        $r = Golden::run_cmd($prog, '--tokens', join(',', @prompt), '-n', $ngen, '--temp', '0');
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

diag($_) for @summary;
done_testing();
