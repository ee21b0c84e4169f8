#!/usr/bin/perl
# Layer dedup (codegen/dedup.c): layers of one structure share one emitted function.
# - the programs built with and without dedup give bit-identical teacher-forced logits,
#   generated tokens and statistics (same kernels, same order); without dedup is -O0 on the
#   dump of the optimized IR, so that fused attention and head-major caches stay as they are;
# - the layer functions and which layer calls which are what the specs say: llama and
#   finedeep one structure; UniAttn its leaders with fused attention, its leaders whose
#   probabilities are reused, and its reusers (from the spec's leader rule);
#   per-layer widths share only equal widths; DSMoE's MoE layers 1..3 one function;
# - -O0 emits no layer function; the C for 32 layers is under 1.5x the C for 4 (lines).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Golden qw(run_cmd);

my $kiln = Golden::kiln();
my $dir  = Golden::tmpdir();
my @tokens = (3, 17, 5, 42, 9, 28, 11, 7);

# The emitted C of spec: (text, { layer => function }, number of layer functions).
sub emit_c {
    my ($spec, $tag, @args) = @_;
    my $c = "$dir/$tag.c";
    my $r = run_cmd($kiln, 'emit-c', $spec, @args, '-o', $c);
    ok($r->{rc} == 0, "$tag: emit-c") or diag(Golden::how($r));
    my $text = Golden::slurp($c) // '';
    my %fn_of;
    $fn_of{$2} = $1 while $text =~ /layer_(\d+)\(c, tokens, pos0, T, t0, (?:a|0), sh, nsh, par\);[^\n]*\/\* l=(\d+) \*\//g;
    my $nfns = () = $text =~ /^static void layer_\d+\(/mg;
    return ($text, \%fn_of, $nfns);
}

# The layers grouped by the function they call: "0,1,2,5 | 3,4,6,7" (groups by first layer).
sub partition {
    my ($fn_of) = @_;
    my %by;
    push @{ $by{ $fn_of->{$_} } }, $_ for sort { $a <=> $b } keys %$fn_of;
    return join ' | ', sort { (split /,/, $a)[0] <=> (split /,/, $b)[0] }
                       map { join ',', @$_ } values %by;
}

# Runs prog three ways; returns the outputs that must not change with dedup.
sub outputs {
    my ($prog, $stats) = @_;
    my $lf = "$prog.logits";
    my $r = run_cmd($prog, '--tokens', join(',', @tokens), '--logits', $lf, $stats ? '--stats' : ());
    ok($r->{rc} == 0, "$prog: teacher-forced run") or diag(Golden::how($r));
    my $g = run_cmd($prog, '--tokens', join(',', @tokens[0 .. 3]), '-n', 6, '--temp', 0);
    ok($g->{rc} == 0, "$prog: generation") or diag(Golden::how($g));
    return { logits => Golden::slurp($lf) // '', generated => $g->{out},
             # the statistics only: the memory lines differ, since -O0 also skips cse/dce
             stats => $stats ? join('', grep { /^stat / } split /^/m, $r->{err}) : '' };
}

sub same_outputs {
    my ($spec, $tag, $defines, $stats) = @_;
    my $w = "$dir/$tag.safetensors";
    return unless Golden::make_weights(spec => $spec, defines => $defines, seed => 3, out => $w,
                                       label => $tag);
    my %out;
    my $ir = "$dir/$tag-opt.ir";   # the optimized IR: -O0 on it turns off only dedup
    my $d = run_cmd($kiln, 'dump', $spec, @$defines);
    ok($d->{rc} == 0, "$tag: dump") or diag(Golden::how($d));
    open my $fh, '>', $ir or die "$ir: $!";
    print $fh $d->{out};
    close $fh;
    for my $mode (['dedup', $spec, $defines], ['O0', $ir, ['-O0']]) {
        my ($m, $src, $flags) = @$mode;
        my $prog = "$dir/$tag-$m";
        next unless Golden::build_prog(spec => $src, weights => $w, out => $prog,
                                       defines => $flags, label => "$tag $m");
        $out{$m} = outputs($prog, $stats);
    }
    return unless $out{dedup} && $out{O0};
    ok(length $out{dedup}{logits} > 0 && $out{dedup}{logits} eq $out{O0}{logits},
       "$tag: logits bit-identical with and without dedup");
    ok($out{dedup}{generated} =~ /\d/ && $out{dedup}{generated} eq $out{O0}{generated},
       "$tag: generated tokens identical (the logits rows only: last layer's t0 argument)")
        or diag("dedup: $out{dedup}{generated}\nO0: $out{O0}{generated}");
    ok($out{dedup}{stats} =~ /^stat \w+\[3\] /m && $out{dedup}{stats} eq $out{O0}{stats},
       "$tag: same statistics (--stats)") or diag("dedup:\n$out{dedup}{stats}O0:\n$out{O0}{stats}")
        if $stats;
}

same_outputs('examples/llama.kiln', 'llama', []);
same_outputs('examples/uniattn.kiln', 'uniattn', []);
same_outputs('examples/dsmoe.kiln', 'dsmoe', [], 1);
same_outputs('examples/finedeep.kiln', 'finedeep', []);
same_outputs('examples/per-layer.kiln', 'per-layer', ['-D', 'hidden=96,96,160']);

# the structures
my ($text, $fn_of, $n) = emit_c('examples/llama.kiln', 'llama-c');
is($n, 1, 'llama: one layer function');
is(partition($fn_of), '0,1,2,3', 'llama: every layer calls it (the last with its t0 rows)');

# UniAttn (layers 8, group_size 3, begin 2, end 8): leader(l) = l < begin || l >= end ||
# (l - begin) % group_size == 0; leaders compute their softmax, reusers take their leader's.
# A leader nobody reuses has fused attention (passes/fuse_attn.c), one reused keeps its
# softmax: two structures of leaders.
my @lead = grep { $_ < 2 || $_ >= 8 || ($_ - 2) % 3 == 0 } 0 .. 7;
my %is_lead = map { $_ => 1 } @lead;
my %reused = map { ($_ - 2) - ($_ - 2) % 3 + 2 => 1 } grep { !$is_lead{$_} } 0 .. 7;
my @fused = grep { !$reused{$_} } @lead;
my @shared = grep { $reused{$_} } @lead;
my $want = join(' | ', map { join ',', @$_ } \@fused, \@shared, [grep { !$is_lead{$_} } 0 .. 7]);
($text, $fn_of, $n) = emit_c('examples/uniattn.kiln', 'uniattn-c');
is($n, 3, 'uniattn: three layer functions, fused leaders, shared leaders and reusers');
is(partition($fn_of), $want, "uniattn: fused leaders, shared leaders, reusers ($want)");

($text, $fn_of, $n) = emit_c('examples/finedeep.kiln', 'finedeep-c');
is(partition($fn_of), '0,1,2,3', 'finedeep: every layer calls one function');
($text, $fn_of, $n) = emit_c('examples/dsmoe.kiln', 'dsmoe-c');
ok(defined $fn_of->{1} && grep({ ($fn_of->{$_} // -1) eq $fn_of->{1} } 1 .. 3) == 3,
   'dsmoe: the MoE layers 1..3 share one function (guard loops inside it)')
    or diag(partition($fn_of));
like($text, qr/^static void layer_\d+\([^\n]*\n(?:(?!^\}).*\n)*?  \{   \/\* the guard region: its tokens gathered \*\//m,
     'dsmoe: a guard region (its tokens gathered) moved into a layer function');

($text, $fn_of, $n) = emit_c('examples/per-layer.kiln', 'per-layer-c');
is(partition($fn_of), '0 | 1 | 2', 'per-layer widths 96,128,160: no layer shares');
($text, $fn_of, $n) = emit_c('examples/per-layer.kiln', 'per-layer-eq-c', '-D', 'hidden=96,96,160');
is(partition($fn_of), '0,1 | 2', 'per-layer widths 96,96,160: only the equal ones share');

# -O0: the straight-line forward
($text, $fn_of, $n) = emit_c('examples/llama.kiln', 'llama-O0-c', '-O0');
ok($n == 0 && !%$fn_of && $text =~ /kiln_forward/, '-O0: no layer function');

# size: 32 layers against 4
my ($c4)  = emit_c('examples/llama.kiln', 'llama-4', '-D', 'layers=4');
my ($c32) = emit_c('examples/llama.kiln', 'llama-32', '-D', 'layers=32');
my $l4  = () = $c4 =~ /\n/g;
my $l32 = () = $c32 =~ /\n/g;
ok($l4 > 0 && $l32 < 1.5 * $l4, "llama: C for 32 layers ($l32 lines) under 1.5x the C for 4 ($l4)");
my ($o32) = emit_c('examples/llama.kiln', 'llama-32-O0', '-D', 'layers=32', '-O0');
my $lo32 = () = $o32 =~ /\n/g;
ok($lo32 > 4 * $l32, "llama: 32 layers straight-line ($lo32 lines) is what dedup saves");

# the decisions, as pass_note records them for --report (tests/unit/dedup_notes.c prints them)
my $notes_prog = ($ENV{KILN_BUILD} // 'build') . '/tests/dedup_notes';
sub notes {
    my ($spec, $tag, @flags) = @_;
    my $ir = "$dir/$tag.ir";
    my $d = run_cmd($kiln, 'dump', $spec);
    open my $fh, '>', $ir or die "$ir: $!";
    print $fh $d->{out};
    close $fh;
    my $r = run_cmd($notes_prog, $ir, @flags);
    ok($d->{rc} == 0 && $r->{rc} == 0, "$tag: dump and dedup_notes") or diag(Golden::how($r));
    return $r->{out};
}
my $notes = notes('examples/uniattn.kiln', 'uniattn-notes');
my @reuse = grep { !$is_lead{$_} } 0 .. 7;
like($notes, qr/^dedup: l=0,1: 2 layers share layer_0 \(\d+ steps, \d+ arguments\)$/m,
     'uniattn notes: the fused leaders share layer_0');
like($notes, qr/^dedup: l=2,5: 2 layers share layer_1 \(/m, 'uniattn notes: the shared leaders layer_1');
like($notes, qr/^dedup: l=3,4,6,7: 4 layers share layer_2 \(/m, 'uniattn notes: the reusers layer_2');
my ($f0, $f1, $f2) = map { join ',', @$_ } \@fused, \@shared, \@reuse;
like($notes, qr/^fn 0: .* layers $f0\nfn 1: .* layers $f1\nfn 2: .* layers $f2$/m,
     'uniattn: the calls are the layers the notes name');
like(notes('examples/uniattn.kiln', 'uniattn-notes-O0', '-O0'),
     qr/\Adedup: off \(-O0\): one straight-line forward\n\z/, '-O0: one note, no function');
like(notes('examples/per-layer.kiln', 'per-layer-notes'),
     qr/^dedup: l=0: alone in layer_0 .*\n.*l=1: alone in layer_1 .*\n.*l=2: alone in layer_2 /m,
     'per-layer notes: three widths, three functions');
done_testing();
