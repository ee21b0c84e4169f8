#!/usr/bin/perl
# Fusion (codegen/fuse.c): every example (dsmoe, mixtral and finedeep with per-token expert
# loops; gpt-parallel run in blocks of 3 tokens) built with fusion and with -O0 (none; on the
# optimized dump, so that fused attention stays) gives the same
# teacher-forced logits and the same generated tokens. Bit for bit: a fused map evaluates the
# same float operations in the same order as the steps it replaces, the linear epilogue is the
# same single add after the same sum, and the generated C asks clang not to contract. Stored
# weights f16 / bf16 and the thread split (a width past the split threshold, --threads 2)
# exercise the epilogue kernels. The generated C of llama has no residual add step left (each
# became the epilogue of a krt_linear call, `.res = ...`) and fewer element loops; -O0 has
# neither. A model of 5.1M multiply-adds a token gets the AVX2 copy of its element loops.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Golden qw(run_cmd);

my $kiln = Golden::kiln();
my $dir  = Golden::tmpdir();
my @tokens = ('--tokens', '3,17,42,5,9,11,2,30,7');

my @cases = (
    # [name, spec, -D values, kiln build arguments, program arguments]
    ['llama', 'examples/llama.kiln', ''],
    ['llama-1layer', 'examples/llama.kiln', 'layers=1'],
    ['llama-f16-mt', 'examples/llama.kiln', 'dim=128 hidden=352 layers=2', ['--wtype', 'f16'],
     ['--threads', '2']],
    ['llama-bf16', 'examples/llama.kiln', 'layers=2', ['--wtype', 'bf16']],
    ['dsmoe', 'examples/dsmoe.kiln', ''],
    ['finedeep', 'examples/finedeep.kiln', ''],
    ['uniattn', 'examples/uniattn.kiln', ''],
    ['gelu-mlp', 'examples/gelu-mlp.kiln', ''],
    ['gpt2', 'examples/gpt2.kiln', ''],
    ['gpt-parallel-batch3', 'examples/gpt-parallel.kiln', '', [], ['--batch', '3']],
    ['mixtral', 'examples/mixtral.kiln', ''],
    ['per-layer', 'examples/per-layer.kiln', ''],
    ['llama2c', 'examples/llama2c.kiln', ''],
    # 5.1M multiply-adds a token: the layer functions also get an AVX2 copy (target_clones)
    ['llama-clones', 'examples/llama.kiln', 'dim=256 hidden=704 layers=8 heads=4 kv_heads=2',
     [], ['--threads', '2']],
);

# Builds one program; returns its generated C (or undef after a failed assertion).
sub build {
    my ($label, $spec, $w, $prog, $defs, $args, @o0) = @_;
    my $r = run_cmd($kiln, 'build', $spec, @$defs, '--weights', $w, '-o', $prog,
                    '--emit-c', "$prog.c", @$args, @o0);
    ok($r->{rc} == 0 && -x $prog, "$label: kiln build @o0") or do { diag(Golden::how($r)); return };
    return Golden::slurp("$prog.c");
}

# Runs a program: [logits text, generated tokens text], or undef after a failed assertion.
sub run_prog {
    my ($label, $prog, $run) = @_;
    my $r = run_cmd($prog, @tokens, '--logits', "$prog.logits", @$run);
    ok($r->{rc} == 0, "$label: teacher-forced logits") or do { diag(Golden::how($r)); return };
    my $g = run_cmd($prog, @tokens, '-n', 6, '--temp', 0, @$run);
    ok($g->{rc} == 0, "$label: greedy generation") or do { diag(Golden::how($g)); return };
    return [Golden::slurp("$prog.logits"), $g->{out}];
}

my %c_of;
for my $c (@cases) {
    my ($name, $spec, $defs, $args, $run) = @$c;
    my @d = map { ('-D', $_) } split ' ', $defs;
    my $w = "$dir/$name.safetensors";
    my $r = run_cmd($kiln, 'weights', $spec, @d, '--seed', 7, '-o', $w);
    ok($r->{rc} == 0, "$name: kiln weights") or do { diag(Golden::how($r)); next };
    my $fused_c = build($name, $spec, $w, "$dir/$name-fused", \@d, $args // []);
    # -O0 on the optimized dump: fused attention and head-major caches (passes/fuse_attn.c,
    # kvlayout.c) stay, so the two differ only in this codegen fusion
    my $d = run_cmd($kiln, 'dump', $spec, @d, @{ $args // [] });
    ok($d->{rc} == 0, "$name: dump") or do { diag(Golden::how($d)); next };
    open my $fh, '>', "$dir/$name-opt.ir" or die $!;
    print $fh $d->{out};
    close $fh;
    my $plain_c = build($name, "$dir/$name-opt.ir", $w, "$dir/$name-plain", [], $args // [], '-O0');
    next unless defined $fused_c && defined $plain_c;
    $c_of{$name} = [$fused_c, $plain_c];
    my $f = run_prog("$name fused", "$dir/$name-fused", $run // []) or next;
    my $p = run_prog("$name -O0", "$dir/$name-plain", $run // []) or next;
    my $rows = Golden::read_rows("$dir/$name-fused.logits");
    ok($rows && @$rows == 9 && length $f->[0] > 0, "$name: 9 rows of logits");
    ok($f->[0] eq $p->[0], "$name: logits with fusion are bit-identical to -O0")
        or diag('max ratio ' . Golden::max_ratio($rows, Golden::read_rows("$dir/$name-plain.logits")));
    ok($f->[1] eq $p->[1] && $f->[1] =~ /\d/, "$name: the same generated tokens");
    ok($fused_c =~ /fused:/ && $plain_c !~ /fused:|\.res = (?!0,)/, "$name: only the fused build has fused steps");
}

# The generated C of one llama layer (layers=1: no layer function, every step printed once):
# each residual add is inside a linear, and the element loops of the RMSNorm tails are merged.
# With 4 layers (one layer function under dedup.c) no residual add step is left either.
sub count { my ($re, $s) = @_; my $n = () = $s =~ /$re/g; return $n }
my $res = qr/krt_linear\(&\(krt_lin\)\{[^}]*\.dtype = KBLOB_F32[^}]*\.res = (?!0,)/;
my $add = qr{/\* %\d+ add x \*/};
if (my $c = $c_of{'llama-1layer'}) {
    my ($fused, $plain) = @$c;
    is(count($res, $fused), 2, 'llama layer: 2 linears carry their residual add');
    is(count($add, $fused), 0, 'llama layer: no residual add step is left');
    is(count($add, $plain), 2, 'llama layer -O0: 2 residual add steps');
    my $loops = qr/for \(int64_t i = 0; i < /;
    my ($nf, $np) = (count($loops, $fused), count($loops, $plain));
    # the attention and FFN norms' gains are folded into their products (fold-gain), so their
    # tails are 2 loops that merge; the final norm keeps its gain (the classifier is tied)
    ok($nf > 0 && $nf + 9 <= $np,
       "llama layer: element loops $np -> $nf (at least 9 fewer: 2 per folded RMSNorm, 3 for "
       . "the final one, 1 per residual add)");
}
if (my $c = $c_of{llama}) {
    ok(count($res, $c->[0]) >= 2 && count($add, $c->[0]) == 0 && count($add, $c->[1]) == 8,
       'llama 4 layers: no residual add step left (-O0: 8)');
}
if (my $c = $c_of{'llama-f16-mt'}) {
    ok($c->[0] =~ /krt_linear\(&\(krt_lin\)\{[^}]*\.dtype = KBLOB_F16[^}]*\.res = (?!0,)[^}]*\}, sh, nsh, XK\)/,
       'llama f16 128 wide: the split linear carries its epilogue');
}
if (my $c = $c_of{'llama-bf16'}) {
    ok($c->[0] =~ /krt_linear\(&\(krt_lin\)\{[^}]*\.dtype = KBLOB_BF16[^}]*\.res = (?!0,)/,
       'llama bf16: the bf16 kernel carries its epilogue');
}
# Element loops of a model of 4M+ multiply-adds a token are also compiled for AVX2, the copy
# chosen at load (its logits are the -O0 build's above, bit for bit); small models and -O0
# are compiled once.
if (my $c = $c_of{'llama-clones'}) {
    ok($c->[0] =~ /target_clones\("avx2", "default"\)/ && $c->[0] =~ /^KILN_LOOPS\nstatic void layer_0\(/m
       && $c->[1] !~ /target_clones/, 'llama 5.1M multiply-adds: layer functions in an AVX2 copy too, not at -O0');
}
if (my $c = $c_of{llama}) {
    ok($c->[0] !~ /target_clones/, 'llama (small): no AVX2 copy');
}
if (my $c = $c_of{gpt2}) {
    ok($c->[0] =~ /krt_linear\(&\(krt_lin\)\{[^}]*\.res = (?!0,)[^}]*\.ldr = 0,/,
       'gpt2: a bias add is inside its linear');
}
done_testing();
