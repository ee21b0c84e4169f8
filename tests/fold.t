#!/usr/bin/perl
# The folding passes (fold-const, fold-gain, fuse-linear) on whole models: for each example,
# the dump after widen run through them (and cse, dce, memplan) reads back byte for byte, is
# a fixed point of the pipeline, and holds what the passes should make (stacked Q/K/V and
# gate/up products, gains folded into the weights, Finedeep's gates folded through the down
# projection); the program built from that dump gives the logits of the program built with
# -O0 (no folding) within the golden tolerance, for prompts run whole and in blocks of 3;
# and the blob of the fused build holds the same weight bytes as the build without
# fuse-linear, in other tensors: each stacked weight is stored once.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Golden qw(run_cmd);

my $kiln = Golden::kiln();
my $dir  = Golden::tmpdir();
# the pipeline after widen, as a plain run runs it (kiln --list-passes, without the passes
# that run only when asked)
my $list = run_cmd($kiln, '--list-passes');
my @runs = grep { $_ ne 'widen' }
           map { $_->[0] } grep { $_->[1] ne 'on request' }
           map { [ /^\s*\d+\s+(\S+)\s+(required|optimization|on request)\s/ ] }
           grep { /^\s*\d+\s/ } split /\n/, $list->{out};
my $passes = join(',', @runs);
ok($passes =~ /\bfold-const,fold-gain,fuse-linear\b.*\bmemplan$/, "the pipeline after widen: $passes");
my @tokens = ('--tokens', '1,5,9,33,2,7,100,3,64,17');

sub write_file {
    my ($f, $text) = @_;
    open my $fh, '>', $f or die "$f: $!";
    print $fh $text;
    close $fh;
}

# The weight blob appended to a program: (number of tensors, bytes of tensor data).

sub logits {
    my ($prog, $label, @extra) = @_;
    my $f = "$dir/$label.logits";
    my $r = run_cmd($prog, @tokens, '--logits', $f, @extra);
    ok($r->{rc} == 0 && -s $f, "$label: teacher-forced run") or diag(Golden::how($r));
    return Golden::read_rows($f);
}

# Fewer layers than the examples' defaults, to build quickly (UniAttn keeps two reusers).
my %defs = (llama => ['-D', 'layers=2'], finedeep => ['-D', 'layers=2'], dsmoe => ['-D', 'layers=2'],
            uniattn => ['-D', 'layers=5', '-D', 'begin=1', '-D', 'end=5', '-D', 'group_size=2']);

# What each model's folded dump must hold: [description, pattern, count].
my %expect = (
    llama    => [['Q/K/V and gate/up stacked over gain-scaled weights',
                  qr/^tensor \@\d+ f32\[\d+, 64\] (?:panel )?= concat\(scale_cols\(/m, 4]],
    finedeep => [['each expert gate folded through its down projection',
                  qr/^tensor \@\d+ f32\[22\] = matvec_t\(/m, 16],
                 ['all experts of a sub-layer in one product',
                  qr/^tensor \@\d+ f32\[176, 64\] (?:panel )?= concat\(/m, 4]],
    uniattn  => [['a reuser\'s V and compensation projections stacked',
                  qr/^tensor \@\d+ f32\[96, 64\] (?:panel )?= concat\(scale_cols\("model\.layers\.\d+\.self_attn\.v_proj\.weight" f32\[32, 64\], "[^"]+" f32\[64\]\), scale_cols\("model\.layers\.\d+\.self_attn\.v2_proj\.weight"/m, 2]],
    dsmoe    => [['each expert\'s gate and up rows in one product (of gain-scaled tensors)',
                  qr/^tensor \@\d+ f32\[64, 64\] (?:panel )?= concat\(rows\(scale_cols\("model\.layers\.\d+\.mlp\.gate_proj\.weight" f32\[256, 64\], "[^"]+" f32\[64\]\), \d+:\d+\), rows\(scale_cols\("model\.layers\.\d+\.mlp\.up_proj/m, 16],
                 ['the expert products under their guards', qr/ = linear %\d+, %\d+ if %\d+ mem=/m, 32]],
);

for my $spec (sort glob 'examples/*.kiln') {
    (my $name = $spec) =~ s{.*/|\.kiln$}{}g;
    my $x = "$dir/$name-widen.ir";
    my @d = @{ $defs{$name} // [] };
    my $r = run_cmd($kiln, 'dump', $spec, @d, '--after', 'widen');
    ok($r->{rc} == 0, "$name: dump after widen") or do { diag(Golden::how($r)); next };
    write_file($x, $r->{out});
    $r = run_cmd($kiln, 'dump', $x, '--passes', $passes);
    ok($r->{rc} == 0 && $r->{out} =~ /^kiln-ir 2\n/, "$name: $passes on the dump")
        or do { diag(Golden::how($r)); next };
    my $folded = $r->{out};
    my $y = "$dir/$name-folded.ir";
    write_file($y, $folded);
    my $back = run_cmd($kiln, 'dump', $y);
    ok($back->{rc} == 0 && $back->{out} eq $folded, "$name: the folded dump reads back byte for byte")
        or diag(Golden::how($back));
    my $again = run_cmd($kiln, 'dump', $y, '--after', 'memplan');
    ok($again->{rc} == 0 && $again->{out} eq $folded,
       "$name: the pipeline on the folded dump changes nothing (a fixed point)")
        or diag(Golden::how($again));
    my $spec_full = run_cmd($kiln, 'dump', $spec, @d);
    ok($spec_full->{rc} == 0 && $spec_full->{out} eq $folded,
       "$name: the pipeline on the spec runs the same passes") or diag(Golden::how($spec_full));
    my $o0 = run_cmd($kiln, 'dump', $spec, @d, '-O0');
    ok($o0->{rc} == 0 && $o0->{out} !~ /= (concat|scale_cols|matvec_t)\(/ && $o0->{out} !~ / = slice /,
       "$name: -O0 folds and fuses nothing") or diag(Golden::how($o0));
    for my $e (@{ $expect{$name} // [] }) {
        my ($what, $re, $want) = @$e;
        my $n = () = $folded =~ /$re/g;
        is($n, $want, "$name: $what ($want tensors)");
    }
    next unless $expect{$name};

    # logits: folded against -O0, whole prompt and in blocks of 3
    my $w = "$dir/$name.safetensors";
    Golden::make_weights(spec => $spec, defines => \@d, seed => 7, out => $w, label => $name) or next;
    my %prog = (folded => [$y], plain => [$x, '-O0'], unfused => [$x, '--disable-pass', 'fuse-linear']);
    my $built = 1;
    for my $k (sort keys %prog) {
        my ($in, @flags) = @{ $prog{$k} };
        my $b = run_cmd($kiln, 'build', $in, '--weights', $w, '-o', "$dir/$name-$k", @flags);
        ok($b->{rc} == 0 && -x "$dir/$name-$k", "$name: build $k") or do { diag(Golden::how($b)); $built = 0 };
    }
    next unless $built;
    my $plain = logits("$dir/$name-plain", "$name-plain");
    for my $k ('folded', 'unfused') {
        my $got = logits("$dir/$name-$k", "$name-$k");
        my $ratio = Golden::max_ratio($got, $plain);
        ok($ratio <= 1e-4, sprintf("$name: $k logits equal -O0's within 1e-4 of the row max (%.3g)", $ratio));
    }
    my $blocks = logits("$dir/$name-folded", "$name-folded-b3", '--batch', 3);
    my $ratio = Golden::max_ratio($blocks, $plain);
    ok($ratio <= 1e-4, sprintf("$name: folded logits in blocks of 3 equal -O0's (%.3g)", $ratio));

    # each stacked weight stored once: the same bytes as without fuse-linear, fewer tensors
    my ($nf, $bf) = Golden::blob_tensors("$dir/$name-folded");
    my ($nu, $bu) = Golden::blob_tensors("$dir/$name-unfused");
    ok($bf > 0 && $bf == $bu && $nf != $nu,
       "$name: the fused blob holds the unfused weight bytes ($bf = $bu), restacked ($nf tensors, not $nu)");
}

# bf16 weights: the gain-scaled weights are rounded to bf16 once more; the logits move by
# about what bf16 storage itself moves them, never a lot
{
    my @d = ('-D', 'layers=2');
    my $w = "$dir/llama-bf16.safetensors";
    my $r = run_cmd($kiln, 'weights', 'examples/llama.kiln', @d, '--seed', 7, '--dtype', 'bf16',
                    '-o', $w);
    ok($r->{rc} == 0, 'llama: bf16 weights') or diag(Golden::how($r));
    my %rows;
    for my $k (['folded'], ['plain', '-O0']) {
        my ($name, @flags) = @$k;
        my $prog = "$dir/llama-bf16-$name";
        $r = run_cmd($kiln, 'build', 'examples/llama.kiln', @d, '--weights', $w, '-o', $prog, @flags);
        ok($r->{rc} == 0, "llama bf16: build $name") or diag(Golden::how($r));
        $rows{$name} = logits($prog, "llama-bf16-$name");
    }
    my $ratio = Golden::max_ratio($rows{folded}, $rows{plain});
    ok($ratio > 0 && $ratio < 2e-2,
       sprintf('llama bf16: gain folding rounds once more, the logits move a little (%.3g)', $ratio));
}

done_testing();
