#!/usr/bin/perl
# GGUF through the CLI: `kiln weights --format gguf` (f32, f16, q8_0, q4_0) writes a file
# that an independent reader (the small GGUF parser below) finds well-formed, with llama
# names, innermost-first dimensions, aligned offsets and the spec's hyperparameters;
# `kiln inspect` lists its metadata and tensors; `kiln build` from an F32 or F16 GGUF gives
# the logits of the same weights read from safetensors, bit for bit; a damaged file makes
# build and inspect fail cleanly (exit 1, the file and the place named, no program left).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP ();
use Golden qw(run_cmd);

my $kiln = Golden::kiln();
my $dir  = Golden::tmpdir();
my $spec = 'examples/llama2c.kiln';
my @D = map { ('-D', $_) } qw(dim=64 hidden=96 layers=2 heads=4 kv_heads=2 vocab=40 ctx=32);

# ---- an independent GGUF reader (enough for kiln's files): header, metadata, tensor infos
my %SCALAR = (0 => 'C', 1 => 'c', 2 => 'S<', 3 => 's<', 4 => 'L<', 5 => 'l<', 6 => 'f<',
              7 => 'C', 10 => 'Q<', 11 => 'q<', 12 => 'd<');
my %SIZE = (0 => 1, 1 => 1, 2 => 2, 3 => 2, 4 => 4, 5 => 4, 6 => 4, 7 => 1, 10 => 8, 11 => 8,
            12 => 8);
sub gguf_parse {
    my ($b) = @_;
    my $pos = 0;
    my $take = sub { my $s = substr($b, $pos, $_[0]); $pos += $_[0]; $s };
    my $u32 = sub { unpack 'L<', $take->(4) };
    my $u64 = sub { unpack 'Q<', $take->(8) };
    my $str = sub { $take->($u64->()) };
    my $value;
    $value = sub {
        my ($t) = @_;
        return $str->() if $t == 8;
        if ($t == 9) {
            my ($it, $n) = ($u32->(), $u64->());
            return [ map { $value->($it) } 1 .. $n ];
        }
        return unpack $SCALAR{$t}, $take->($SIZE{$t});
    };
    return undef unless $take->(4) eq 'GGUF';
    my %g = (version => $u32->(), kv => {}, keys => [], tensors => []);
    my ($nt, $nkv) = ($u64->(), $u64->());
    for (1 .. $nkv) {
        my $k = $str->();
        my $t = $u32->();
        my $at = $pos;
        $g{kv}{$k} = { type => $t, value => $value->($t), at => $at };
        push @{ $g{keys} }, $k;
    }
    for (1 .. $nt) {
        my %t = (name => $str->(), at_ndims => $pos);
        my $nd = $u32->();
        $t{dims} = [ map { $u64->() } 1 .. $nd ];       # innermost first
        $t{at_type} = $pos;
        $t{type} = $u32->();
        $t{at_offset} = $pos;
        $t{offset} = $u64->();
        push @{ $g{tensors} }, \%t;
    }
    my $align = $g{kv}{'general.alignment'} ? $g{kv}{'general.alignment'}{value} : 32;
    $g{end_infos} = $pos;
    $g{data} = $pos + ($align - $pos % $align) % $align;
    return \%g;
}

my %GGUF_TYPE = (0 => ['F32', 4, 1], 1 => ['F16', 2, 1], 2 => ['Q4_0', 18, 32],
                 8 => ['Q8_0', 34, 32], 30 => ['BF16', 2, 1]);
sub numel { my $n = 1; $n *= $_ for @{ $_[0] }; $n }
sub nbytes { my ($t) = @_; my (undef, $per, $blk) = @{ $GGUF_TYPE{ $t->{type} } }; numel($t->{dims}) / $blk * $per }

my %LAYER = (attn_norm => 'input_layernorm', attn_q => 'self_attn.q_proj',
             attn_k => 'self_attn.k_proj', attn_v => 'self_attn.v_proj',
             attn_output => 'self_attn.o_proj', ffn_norm => 'post_attention_layernorm',
             ffn_gate => 'mlp.gate_proj', ffn_up => 'mlp.up_proj', ffn_down => 'mlp.down_proj');
my %TOP = ('token_embd.weight' => 'model.embed_tokens.weight',
           'output_norm.weight' => 'model.norm.weight', 'output.weight' => 'lm_head.weight');
sub hf_name {
    my ($n) = @_;
    return $TOP{$n} if $TOP{$n};
    return "model.layers.$1.$LAYER{$2}.$3" if $n =~ /^blk\.(\d+)\.(\w+)\.(weight|bias)$/ && $LAYER{$2};
    return $n;
}

# The same tensors as a safetensors file (F32/F16/BF16 only): HF names, the same bytes.
sub gguf_to_safetensors {
    my ($bytes, $g, $out) = @_;
    my (%hdr, $data) = ();
    $data = '';
    for my $t (@{ $g->{tensors} }) {
        my $n = nbytes($t);
        $hdr{ hf_name($t->{name}) } = { dtype => $GGUF_TYPE{ $t->{type} }[0],
                                        shape => [ reverse @{ $t->{dims} } ],
                                        data_offsets => [ length $data, length($data) + $n ] };
        $data .= substr($bytes, $g->{data} + $t->{offset}, $n);
    }
    my $h = JSON::PP->new->canonical->encode(\%hdr);
    $h .= ' ' x ((8 - length($h) % 8) % 8);
    open my $fh, '>:raw', $out or die "$out: $!";
    print $fh pack('Q<', length $h), $h, $data;
    close $fh;
}

sub no_temporaries {
    opendir my $d, $dir or die;
    return !grep { /\.tmp\./ } readdir $d;
}

# ---- kiln weights --format gguf
my (%file, %parsed);
for my $dt (qw(f32 f16 q8_0 q4_0)) {
    my $f = "$dir/w-$dt.gguf";
    my $r = run_cmd($kiln, 'weights', $spec, @D, '--seed', 5, '--format', 'gguf', '--dtype', $dt,
                    '-o', $f);
    ok($r->{rc} == 0 && -s $f && no_temporaries(), "kiln weights --format gguf --dtype $dt")
        or diag(Golden::how($r));
    $file{$dt} = $f;
    my $bytes = Golden::slurp($f) // '';
    my $g = $parsed{$dt} = gguf_parse($bytes);
    ok($g && $g->{version} == 3, "$dt: an independent reader parses it (GGUF v3)") or next;
    my $kv = $g->{kv};
    my %want = ('general.architecture' => 'llama', 'general.alignment' => 32,
                'general.name' => 'llama2c', 'llama.embedding_length' => 64,
                'llama.feed_forward_length' => 96, 'llama.block_count' => 2,
                'llama.attention.head_count' => 4, 'llama.attention.head_count_kv' => 2,
                'llama.context_length' => 32, 'llama.rope.dimension_count' => 16,
                'general.file_type' => { f32 => 0, f16 => 1, q8_0 => 7, q4_0 => 2 }->{$dt});
    my @wrong = grep { !defined $kv->{$_} || $kv->{$_}{value} ne $want{$_} } sort keys %want;
    ok(!@wrong && $kv->{'general.alignment'}{type} == 4 &&
       $kv->{'llama.attention.layer_norm_rms_epsilon'}{type} == 6 &&
       abs($kv->{'llama.attention.layer_norm_rms_epsilon'}{value} - 1e-5) < 1e-10 &&
       $kv->{'llama.rope.freq_base'}{value} == 10000,
       "$dt: general.* and llama.* metadata (u32 alignment, f32 eps and rope base)")
        or diag("wrong: @wrong");
    my %t = map { $_->{name} => $_ } @{ $g->{tensors} };
    my $mat = { f32 => 0, f16 => 1, q8_0 => 8, q4_0 => 2 }->{$dt};
    my @bad;
    for my $t (@{ $g->{tensors} }) {
        my $is_norm = $t->{name} =~ /norm\.weight$/;
        push @bad, "$t->{name}: type $t->{type}" if $t->{type} != ($is_norm ? 0 : $mat);
        push @bad, "$t->{name}: offset $t->{offset}" if $t->{offset} % 32;
        push @bad, "$t->{name}: past the end"
            if $g->{data} + $t->{offset} + nbytes($t) > length $bytes;
    }
    ok(!@bad && @{ $g->{tensors} } == 1 + 2 * 9 + 1 && $t{'blk.1.ffn_gate.weight'} &&
       "@{ $t{'blk.1.ffn_gate.weight'}{dims} }" eq '64 96' &&
       "@{ $t{'blk.0.ffn_down.weight'}{dims} }" eq '96 64' && $t{'output_norm.weight'} &&
       !grep({ /^model\./ } keys %t),
       "$dt: GGUF names, dims innermost first, matrices $dt and norm gains F32, aligned offsets")
        or diag(join "\n", @bad);
}
my $sz = sub { -s $file{$_[0]} };
ok($sz->('q8_0') < $sz->('f16') && $sz->('q4_0') < $sz->('q8_0') && $sz->('f16') < $sz->('f32'),
   'sizes: q4_0 < q8_0 < f16 < f32');

# ---- kiln inspect
{
    my $r = run_cmd($kiln, 'inspect', $file{q8_0});
    my @l = split /\n/, $r->{out};
    ok($r->{rc} == 0 && $l[0] =~ /^\Q$file{q8_0}\E: gguf v3, 20 tensors, \d+ metadata keys, alignment 32$/,
       'inspect: the first line names the file, version, counts and alignment')
        or diag(Golden::how($r) . $r->{out});
    ok((grep { /^  general\.architecture\s+string "llama"$/ } @l) &&
       (grep { /^  llama\.embedding_length\s+u32 64$/ } @l) &&
       (grep { /^  llama\.attention\.layer_norm_rms_epsilon\s+f32 1e-05$/ } @l) &&
       (grep { /^  kiln\.weights\s+string "det-weights v1"$/ } @l),
       'inspect: every metadata key with its type and value') or diag($r->{out});
    ok((grep { /^  model\.layers\.1\.mlp\.gate_proj\.weight\s+blk\.1\.ffn_gate\.weight\s+Q8_0 \[96, 64\]  \@\d+$/ } @l) &&
       (grep { /^  model\.norm\.weight\s+output_norm\.weight\s+F32\s+\[64\]  \@\d+$/ } @l),
       'inspect: tensors with the name kiln binds, the GGUF name, type, shape and offset')
        or diag($r->{out});
    $r = run_cmd($kiln, 'inspect', "$dir/none.gguf");
    ok($r->{rc} == 1 && !$r->{sig} && $r->{err} =~ /none\.gguf: error: cannot open/,
       'inspect: a missing file') or diag(Golden::how($r));
}

# ---- usage errors
{
    my $r = run_cmd($kiln, 'weights', $spec, @D, '--dtype', 'q8_0', '-o', "$dir/q.safetensors");
    ok($r->{rc} == 2 && $r->{err} =~ /--dtype q8_0: quantized weights need --format gguf/ &&
       !-e "$dir/q.safetensors", 'weights --dtype q8_0 without --format gguf: usage error')
        or diag(Golden::how($r));
    $r = run_cmd($kiln, 'weights', $spec, @D, '--format', 'llama2c', '--dtype', 'q4_0', '-o', "$dir/q.bin");
    ok($r->{rc} == 2 && $r->{err} =~ /llama2c holds f32 only/, 'weights --format llama2c --dtype q4_0')
        or diag(Golden::how($r));
    $r = run_cmd($kiln, 'weights', $spec, @D, '--format', 'ggml', '-o', "$dir/q.ggml");
    ok($r->{rc} == 2 && $r->{err} =~ /--format must be safetensors, llama2c or gguf, not 'ggml'/,
       'weights --format ggml') or diag(Golden::how($r));
}

# ---- kiln build from GGUF: the logits of the same weights from safetensors, bit for bit
sub build_logits {
    my ($w, $tag) = @_;
    my $prog = "$dir/$tag.prog";
    Golden::build_prog(spec => $spec, weights => $w, out => $prog, defines => \@D,
                       label => $tag) or return undef;
    my $lf = "$dir/$tag.logits";
    my $r = run_cmd($prog, '--tokens', '1,5,9', '--logits', $lf);
    ok($r->{rc} == 0 && -s $lf, "$tag: --logits") or do { diag(Golden::how($r)); return undef };
    return Golden::slurp($lf);
}
my $st = "$dir/st.safetensors";
Golden::make_weights(spec => $spec, seed => 5, defines => \@D, out => $st, label => 'f32 safetensors');
my $l_st = build_logits($st, 'st-f32');
for my $dt (qw(f32 f16)) {
    my $g = $parsed{$dt} or next;
    my $conv = "$dir/from-$dt.safetensors";
    gguf_to_safetensors(Golden::slurp($file{$dt}), $g, $conv);
    my $l_g = build_logits($file{$dt}, "gguf-$dt");
    my $l_c = build_logits($conv, "gguf-$dt-as-safetensors");
    ok(defined $l_g && defined $l_c && $l_g eq $l_c,
       "build from the $dt GGUF: logits equal those of its tensors as safetensors, bit for bit");
    if ($dt eq 'f32') {
        ok(defined $l_g && defined $l_st && $l_g eq $l_st,
           'f32 GGUF: logits equal those of `kiln weights` safetensors, bit for bit');
    } else {
        my $rows = sub { [ map { [ split ' ' ] } grep { /\S/ } split /\n/, $_[0] // '' ] };
        my $worst = Golden::max_ratio($rows->($l_g), $rows->($l_st));
        ok($worst < 1e-2, sprintf('f16 GGUF: logits near the f32 ones (worst ratio %.3g)', $worst));
    }
}

# ---- damaged files: build and inspect fail cleanly, naming the file and the place
my $good = Golden::slurp($file{f32});
my $g = $parsed{f32};
my %t = map { $_->{name} => $_ } @{ $g->{tensors} };
sub patch { my ($at, $fmt, $v) = @_; my $b = $good; substr($b, $at, length pack($fmt, $v)) = pack($fmt, $v); $b }
my $arch_at = $g->{kv}{'general.architecture'}{at} + 8;
my @cases = (
    ['cut-data', substr($good, 0, length($good) - 200), qr/run past the end of the file/],
    ['cut-header', substr($good, 0, 300), qr/truncated at|cannot fit/],
    ['version', patch(4, 'L<', 7), qr/GGUF version 7 is not supported/],
    ['q6k', patch($t{'blk.0.ffn_down.weight'}{at_type}, 'L<', 14),
     qr/tensor 'blk\.0\.ffn_down\.weight' has type Q6_K \(14\); kiln reads F32, F16, BF16, Q8_0 and Q4_0 \(tensor info at byte \d+\)/],
    ['misaligned', patch($t{'blk.1.attn_q.weight'}{at_offset}, 'Q<', $t{'blk.1.attn_q.weight'}{offset} + 4),
     qr/tensor 'blk\.1\.attn_q\.weight': data offset \d+ is not a multiple of the alignment 32/],
    ['ndims', patch($t{'token_embd.weight'}{at_ndims}, 'L<', 7), qr/tensor 'token_embd\.weight': n_dims 7 is not in 1\.\.4/],
    ['arch', do { my $b = $good; substr($b, $arch_at, 5) = 'mamba'; $b },
     qr/GGUF architecture 'mamba' is not supported: kiln reads 'llama'/],
    ['align', patch($g->{kv}{'general.alignment'}{at}, 'L<', 48), qr/'general\.alignment' is 48, not a power of two/],
    ['empty', '', qr/empty/],
);
for my $c (@cases) {
    my ($name, $bytes, $want) = @$c;
    my $f = "$dir/bad-$name.gguf";
    open my $fh, '>:raw', $f or die "$f: $!";
    print $fh $bytes;
    close $fh;
    my $prog = "$dir/bad-$name.prog";
    my $r = run_cmd($kiln, 'build', $spec, @D, '--weights', $f, '-o', $prog);
    ok($r->{rc} == 1 && !$r->{sig} && !$r->{timed_out} && $r->{err} =~ /\Qbad-$name.gguf\E: error: / &&
       $r->{err} =~ $want && !-e $prog, "build with a damaged GGUF ($name): exit 1, named, no program")
        or diag(Golden::how($r));
    $r = run_cmd($kiln, 'inspect', $f);
    ok($r->{rc} == 1 && !$r->{sig} && $r->{err} =~ $want && $r->{out} eq '',
       "inspect of a damaged GGUF ($name): exit 1") or diag(Golden::how($r));
}

done_testing();
