#!/usr/bin/perl
# Thread determinism: every example of examples/*.kiln, with its weights stored in every type
# (kiln build --wtype f32, f16, bf16, q8_0, q4_0), gives bit-identical results with 1, 2 and 3
# threads: the teacher-forced logits of a 40-token prompt run in blocks of 16 (prefill: blocks
# of 16, 16 and 8 rows at positions 0, 16, 32) and the ids of the 16 decode steps that follow
# (one token a call; sampled at temperature 0.8 with a fixed seed, so that every logit's bits
# count).
#
# The sizes make the split really happen (codegen/lower.c, runtime/pool.c): dim 128, vocab
# 512 and FFN widths of 256 or more give products of 32768 multiply-adds or more, which the
# lowering shares between the threads by panels (asserted on the generated C: `sh, nsh` in a
# krt_linear call; MoE experts' products inside guard regions too, for mixtral); blocks of 16
# rows give row-wise steps 4 rows or more per share at 2 and 3 threads (krt_share_rows), and
# attention splits its (token, head) pairs. Every width that a product reads is a multiple of
# 32, so q8_0 and q4_0 apply to every matrix (asserted on the blob: every tensor of rank 2 is
# stored in the type asked for).
#
# Under tests/run.sh's ThreadSanitizer pass (KILN=build/tsan/kiln) every program here is
# instrumented: a data race in the pool, the scheduler or the emitted steps fails its run
# (TSan's exit status 66).
# tests/cli.t (llama, f32) and tests/quant.t (q8_0 / q4_0 on small products, every kernel path
# and block size) check thread counts too, on one model each.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Golden qw(run_cmd);

my $kiln = Golden::kiln();
my $dir  = Golden::tmpdir();

# [example, -D values]: dim 128 everywhere (head_dim 32), vocab 512, two layers where the
# spec lets it choose (uniattn keeps its 8: its sharing pattern needs them)
my @cases = (
    [llama          => 'dim=128 hidden=384 layers=2 vocab=512'],
    [llama2c        => 'dim=128 hidden=384 layers=2 vocab=512'],
    [gpt2           => 'dim=128 layers=2 vocab=512'],
    ['gpt-parallel' => 'dim=128 hidden=384 layers=2 vocab=512'],
    ['gelu-mlp'     => 'dim=128 hidden=384 layers=2 vocab=512'],
    [mixtral        => 'dim=128 hidden=256 layers=2 vocab=512'],
    ['per-layer'    => 'dim=128 vocab=512'],
    [finedeep       => 'dim=128 expert_hidden=64 layers=2 vocab=512'],
    [dsmoe          => 'dim=128 hidden=512 layers=2 vocab=512'],
    [uniattn        => 'dim=128 hidden=384 vocab=512'],
);
my %code = (f32 => 0, f16 => 1, bf16 => 2, q8_0 => 8, q4_0 => 9);
# KILN_THREADS_WTYPES=f32,q4_0 narrows the types (tests/run.sh's ThreadSanitizer pass: its
# builds and runs cost several times more, and a race does not depend on the weights' type),
# `none` skips the file (its AddressSanitizer pass: fuse.t and cli.t run threads under it
# already, and the suite has a time budget); the plain suite takes all five
my $only = $ENV{KILN_THREADS_WTYPES} // 'f32,f16,bf16,q8_0,q4_0';
plan(skip_all => 'KILN_THREADS_WTYPES=none') if $only eq 'none';
my @wtypes = split /,/, $only;
my @unknown = grep { !exists $code{$_} } @wtypes;
BAIL_OUT("KILN_THREADS_WTYPES: unknown type(s) @unknown (f32 f16 bf16 q8_0 q4_0)")
    if @unknown || !@wtypes;
my @threads = (1, 2, 3);
my $prompt = join ',', map { ($_ * 37 + 11) % 512 } 0 .. 39;

is(scalar @cases, scalar(() = glob('examples/*.kiln')), 'every example of examples/ is covered');

# The splits the generated C asks for: shared products (and those of them over a guard
# region's gathered rows), row-shared steps, pair-shared steps.
sub splits {
    my ($c) = @_;
    my @products = $c =~ /krt_linear\(&\(krt_lin\)\{[^}]*\}, sh, nsh, XK\)/g;
    my $gathered = grep { /\.rowidx = / } @products;
    my $rows = () = $c =~ /krt_share_rows\(/g;
    my $pairs = () = $c =~ /krt_(?:attention|attn_scores|attn_apply|softmax_causal)\([^;]*sh, nsh\)/g;
    return (scalar @products, $gathered, $rows, $pairs);
}

# '' when the blob stores every matrix (rank 2) as `wtype`, else what is not.
sub stored_as {
    my ($prog, $wtype) = @_;
    my @m = grep { $_->[3] >= 2 } Golden::blob_entries($prog) or return 'no matrix in the blob';
    my @bad = grep { $_->[0] != $code{$wtype} } @m;
    return @bad ? scalar(@bad) . ' of ' . scalar(@m) . ' matrices in another type' : '';
}

# One program's results at `n` threads: the logits text and the generated ids (one run: the
# prompt teacher-forced in blocks of 16, then 16 decode steps sampled).
sub results {
    my ($prog, $label, $n) = @_;
    my $lf = "$prog.t$n.logits";
    my $r = run_cmd($prog, '--tokens', $prompt, '--batch', 16, '--logits', $lf, '-n', 16,
                    '--temp', 0.8, '--seed', 5, '--threads', $n);
    ok($r->{rc} == 0 && !$r->{sig}, "$label --threads $n: logits and 16 sampled ids")
        or do { diag(Golden::how($r)); return };
    return [Golden::slurp($lf) // '', $r->{out}];
}

for my $case (@cases) {
    my ($name, $defs) = @$case;
    my $spec = "examples/$name.kiln";
    my @d = map { ('-D', $_) } split ' ', $defs;
    my $w = "$dir/$name.safetensors";
    Golden::make_weights(spec => $spec, defines => \@d, seed => 7, out => $w, label => $name)
        or next;
    for my $wtype (@wtypes) {
        my $prog = "$dir/$name-$wtype";
        my @c = $wtype eq 'f32' ? ('--emit-c', "$prog.c") : ();
        my $r = run_cmd($kiln, 'build', $spec, @d, '--weights', $w, '--wtype', $wtype, '-o',
                        $prog, @c);
        ok($r->{rc} == 0 && -x $prog, "$name $wtype: kiln build") or do { diag(Golden::how($r)); next };
        if (@c) {
            my ($products, $gathered, $rows, $pairs) = splits(Golden::slurp("$prog.c") // '');
            ok($products >= 1 && $rows >= 1 && $pairs >= 1, "$name: the generated C shares "
               . "$products products by panels, $rows steps by rows, $pairs by (token, head) pairs");
            ok($gathered >= 1, "$name: $gathered of them over the gathered rows of expert guard regions")
                if $name eq 'mixtral';
        }
        my $why = stored_as($prog, $wtype);
        ok($why eq '', "$name $wtype: every matrix stored as $wtype") or diag($why);
        my %res = map { ($_ => results($prog, "$name $wtype", $_)) } @threads;
        next if grep { !$res{$_} } @threads;
        my @rows = grep { /\S/ } split /\n/, $res{1}[0];
        my @ids = split ' ', $res{1}[1];
        ok(@rows == 40 && @ids == 16, "$name $wtype: 40 logits rows and 16 ids")
            or diag(scalar(@rows) . ' rows, ids: ' . $res{1}[1]);
        my @differ = grep { $res{$_}[0] ne $res{1}[0] || $res{$_}[1] ne $res{1}[1] } @threads;
        ok(!@differ, "$name $wtype: logits and sampled ids bit-identical with 1, 2 and 3 threads")
            or diag("differ at threads: @differ");
        unlink $prog, map { "$prog.t$_.logits" } @threads;
    }
}

done_testing();
