#!/usr/bin/perl
# A llama GGUF's hyperparameters (weights/gguf_hparams.c): `kiln build SPEC --weights F.gguf`
# takes dim, hidden, layers, heads, kv_heads, ctx, eps, rope_base, vocab and tied from the
# file's metadata and tensors, without -D, and gives the logits of the build with the same
# values as -D, bit for bit; -D still wins; dump and check read them too. Hostile metadata
# (a wrong type, zero, 2^40, a negative or NaN eps, a missing key, disagreeing counts, a RoPE
# the spec cannot do, a key the spec has no parameter for, another architecture) is refused
# naming the file and the key: exit 1, no crash, no program. The hostile files are the
# kiln-written one with its metadata rewritten by the small GGUF re-writer below.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Golden qw(run_cmd);

my $kiln = Golden::kiln();
my $dir  = Golden::tmpdir();
my $spec = 'examples/llama2c.kiln';
# none of them the spec's default
my @D = map { ('-D', $_) }
    qw(dim=48 hidden=80 layers=3 heads=6 kv_heads=2 vocab=50 ctx=40 eps=1e-6 rope_base=5000 tied=0);

# ---- GGUF re-writer: every metadata entry kept as its raw bytes, so that one can be
# replaced, dropped or added and the file written again (tensor infos and data unchanged;
# the data section moves with the metadata, its offsets are relative to it)
sub parse_raw {
    my ($b) = @_;
    my $pos = 24;
    my ($nt, $nkv) = unpack 'Q<Q<', substr($b, 8, 16);
    my %size = (0 => 1, 1 => 1, 2 => 2, 3 => 2, 4 => 4, 5 => 4, 6 => 4, 7 => 1, 10 => 8,
                11 => 8, 12 => 8);
    my $skip;
    $skip = sub {
        my ($t) = @_;
        if ($t == 8) { $pos += 8 + unpack('Q<', substr($b, $pos, 8)); return }
        if ($t == 9) {
            my ($it, $n) = unpack 'L<Q<', substr($b, $pos, 12);
            $pos += 12;
            $skip->($it) for 1 .. $n;
            return;
        }
        $pos += $size{$t};
    };
    my @kv;
    for (1 .. $nkv) {
        my $start = $pos;
        my $klen = unpack 'Q<', substr($b, $pos, 8);
        my $key = substr($b, $pos + 8, $klen);
        $pos += 8 + $klen;
        my $t = unpack 'L<', substr($b, $pos, 4);
        $pos += 4;
        $skip->($t);
        push @kv, [ $key, substr($b, $start, $pos - $start) ];
    }
    my $infos_start = $pos;
    for (1 .. $nt) {
        $pos += 8 + unpack('Q<', substr($b, $pos, 8));
        my $nd = unpack 'L<', substr($b, $pos, 4);
        $pos += 4 + 8 * $nd + 4 + 8;
    }
    my $data = $pos + (32 - $pos % 32) % 32;
    return { nt => $nt, kv => \@kv, infos => substr($b, $infos_start, $pos - $infos_start),
             data => substr($b, $data) };
}
sub gstr { pack('Q<', length $_[0]) . $_[0] }
# an entry: key, GGUF type, the packed value
sub entry { my ($k, $t, $v) = @_; gstr($k) . pack('L<', $t) . $v }
sub u32 { entry($_[0], 4, pack 'L<', $_[1]) }
sub u64 { entry($_[0], 10, pack 'Q<', $_[1]) }
sub f32 { entry($_[0], 6, pack 'f<', $_[1]) }
sub str { entry($_[0], 8, gstr($_[1])) }
# rewrite($g, key => entry or undef (dropped), ...); keys not in the file are added
sub rewrite {
    my ($g, %set) = @_;
    my @out;
    for my $e (@{ $g->{kv} }) {
        my ($k, $raw) = @$e;
        if (exists $set{$k}) {
            push @out, $set{$k} if defined $set{$k};
            delete $set{$k};
        } else {
            push @out, $raw;
        }
    }
    push @out, grep { defined } map { $set{$_} } sort keys %set;
    my $b = 'GGUF' . pack('L<Q<Q<', 3, $g->{nt}, scalar @out) . join('', @out) . $g->{infos};
    $b .= "\0" x ((32 - length($b) % 32) % 32);
    return $b . $g->{data};
}
sub put {
    my ($f, $bytes) = @_;
    open my $fh, '>:raw', $f or die "$f: $!";
    print $fh $bytes;
    close $fh or die "$f: $!";
}

sub logits_of {
    my ($prog, $tag) = @_;
    my $lf = "$dir/$tag.logits";
    my $r = run_cmd($prog, '--tokens', '1,7,3,9', '--logits', $lf);
    ok($r->{rc} == 0 && -s $lf, "$tag: --logits") or do { diag(Golden::how($r)); return undef };
    return Golden::slurp($lf);
}

# ---- the file's hyperparameters, without -D
my $gguf = "$dir/w.gguf";
my $r = run_cmd($kiln, 'weights', $spec, @D, '--seed', 3, '--format', 'gguf', '-o', $gguf);
ok($r->{rc} == 0 && -s $gguf, 'kiln weights --format gguf with non-default parameters')
    or diag(Golden::how($r));
Golden::build_prog(spec => $spec, weights => $gguf, out => "$dir/plain", label => 'no -D');
Golden::build_prog(spec => $spec, weights => $gguf, out => "$dir/withd", defines => \@D,
                   label => 'with -D');
my ($l_plain, $l_d) = (logits_of("$dir/plain", 'no -D'), logits_of("$dir/withd", 'with -D'));
ok(defined $l_plain && defined $l_d && $l_plain eq $l_d,
   'built without -D: the logits of the -D build, bit for bit');
$r = run_cmd("$dir/plain", '--help');
like($r->{out}, qr/vocabulary 50 tokens, context 40 positions/,
     'the program has the file\'s vocabulary and context');

$r = run_cmd($kiln, 'dump', $spec, '--weights', $gguf);
my %p = $r->{out} =~ /^param (\w+) = (\S+)$/mg;
is(join(' ', map { "$_=" . ($p{$_} // '?') } qw(dim hidden layers heads kv_heads vocab ctx eps rope_base tied)),
   'dim=48 hidden=80 layers=3 heads=6 kv_heads=2 vocab=50 ctx=40 eps=1e-06 rope_base=5000 tied=0',
   'dump --weights F.gguf: every parameter from the file (eps as the -D text, not f32 digits)');
$r = run_cmd($kiln, 'dump', $spec, '--weights', $gguf, '-D', 'ctx=20');
like($r->{out}, qr/^param ctx = 20$/m, '-D wins over the file');
$r = run_cmd($kiln, 'check', $spec, '--weights', $gguf);
ok($r->{rc} == 0 && $r->{err} eq '', 'check --weights F.gguf') or diag(Golden::how($r));

# ---- metadata rewritten
my $g = parse_raw(Golden::slurp($gguf));
ok(scalar(@{ $g->{kv} }) > 10 && length $g->{data}, 'the re-writer reads the file');
{
    my $same = "$dir/same.gguf";
    put($same, rewrite($g));
    Golden::build_prog(spec => $spec, weights => $same, out => "$dir/same", label => 'rewritten');
    my $l = logits_of("$dir/same", 'rewritten');
    ok(defined $l && defined $l_plain && $l eq $l_plain, 'the re-written file gives the same logits');
}
{   # without rope.freq_base, the base is 10000 (as llama.cpp reads it)
    my $f = "$dir/nobase.gguf";
    put($f, rewrite($g, 'llama.rope.freq_base' => undef));
    $r = run_cmd($kiln, 'dump', $spec, '--weights', $f, '-D', 'rope_base=123');
    like($r->{out}, qr/^param rope_base = 123$/m, 'no rope.freq_base: -D rope_base still taken');
    $r = run_cmd($kiln, 'dump', $spec, '--weights', $f);
    like($r->{out}, qr/^param rope_base = 10000$/m, 'no rope.freq_base: the base is 10000');
}

my $hk = 'llama.attention.head_count';
my @bad = (
    ['head-f32', [$hk => f32($hk, 6)], qr/metadata key '\Q$hk\E' has type f32; it must be an integer/],
    ['head-str', [$hk => str($hk, '6')], qr/'\Q$hk\E' has type string; it must be an integer/],
    ['head-zero', [$hk => u32($hk, 0)], qr/'\Q$hk\E' is 0, not in 1\.\.4096/],
    ['head-2^40', [$hk => u64($hk, 2**40)], qr/'\Q$hk\E' is 1099511627776, not in 1\.\.4096/],
    ['head-u64max', [$hk => entry($hk, 10, "\xff" x 8)],
     qr/'\Q$hk\E' has type u64; it must be an integer/],
    ['layers-neg', ['llama.block_count' => entry('llama.block_count', 5, pack('l<', -3))],
     qr/'llama\.block_count' is -3, not in 1\.\.4096/],
    ['eps-neg', ['llama.attention.layer_norm_rms_epsilon' => f32('llama.attention.layer_norm_rms_epsilon', -1e-5)],
     qr/'llama\.attention\.layer_norm_rms_epsilon' is -1e-05, not a finite number in \(0, 1\]/],
    ['eps-nan', ['llama.attention.layer_norm_rms_epsilon' => entry('llama.attention.layer_norm_rms_epsilon', 6, pack('L<', 0x7fc00000))],
     qr/'llama\.attention\.layer_norm_rms_epsilon' is nan, not a finite number/],
    ['eps-u32', ['llama.attention.layer_norm_rms_epsilon' => u32('llama.attention.layer_norm_rms_epsilon', 1)],
     qr/'llama\.attention\.layer_norm_rms_epsilon' has type u32; it must be f32 or f64/],
    ['base-inf', ['llama.rope.freq_base' => entry('llama.rope.freq_base', 6, pack('L<', 0x7f800000))],
     qr/'llama\.rope\.freq_base' is inf, not a finite number/],
    ['no-dim', ['llama.embedding_length' => undef], qr/has no 'llama\.embedding_length'/],
    ['dim-odd', ['llama.embedding_length' => u32('llama.embedding_length', 50)],
     qr/llama\.embedding_length 50 is not a multiple of llama\.attention\.head_count 6/],
    ['kv-4', ['llama.attention.head_count_kv' => u32('llama.attention.head_count_kv', 4)],
     qr/head_count 6 is not a multiple of llama\.attention\.head_count_kv 4/],
    ['vocab-size', ['llama.vocab_size' => u32('llama.vocab_size', 51)],
     qr/'llama\.vocab_size' is 51, but token_embd\.weight has 50 rows/],
    ['rope-dims', ['llama.rope.dimension_count' => u32('llama.rope.dimension_count', 4)],
     qr/'llama\.rope\.dimension_count' is 4, but the spec rotates the whole head .*no parameter 'rotary_dim'/],
    ['key-length', ['llama.attention.key_length' => u32('llama.attention.key_length', 16)],
     qr/'llama\.attention\.key_length' is 16, but the spec's head size is/],
    ['rope-scaling', ['llama.rope.scaling.type' => str('llama.rope.scaling.type', 'linear')],
     qr/'llama\.rope\.scaling\.type' is "linear", but the spec's RoPE is unscaled/],
    ['experts', ['llama.expert_count' => u32('llama.expert_count', 8)],
     qr/'llama\.expert_count' says the model has experts/],
    ['arch', ['general.architecture' => str('general.architecture', 'qwen2')],
     qr/GGUF architecture 'qwen2' is not supported: kiln reads 'llama'/],
);
for my $c (@bad) {
    my ($name, $set, $want) = @$c;
    my $f = "$dir/bad-$name.gguf";
    put($f, rewrite($g, @$set));
    my $prog = "$dir/bad-$name.prog";
    $r = run_cmd($kiln, 'build', $spec, '--weights', $f, '-o', $prog);
    ok($r->{rc} == 1 && !$r->{sig} && !$r->{timed_out} &&
       $r->{err} =~ /^\Q$f\E: error: / && $r->{err} =~ $want && !-e $prog,
       "$name: build refuses it, naming the file and the key; no program")
        or diag(Golden::how($r));
}
$r = run_cmd($kiln, 'dump', $spec, '--weights', "$dir/bad-head-zero.gguf");
ok($r->{rc} == 1 && $r->{out} eq '' && $r->{err} =~ /is 0, not in/, 'dump refuses it too')
    or diag(Golden::how($r));

# ---- a key the spec has no parameter for: refused unless it holds the spec's own value
{
    my $text = Golden::slurp($spec);
    $text =~ s/, kv_heads = 4// or die 'llama2c.kiln has no kv_heads = 4';
    $text =~ s/(  let head_dim)/  let kv_heads = heads\n$1/ or die;
    my $nokv = "$dir/nokv.kiln";
    put($nokv, $text);
    $r = run_cmd($kiln, 'build', $nokv, '--weights', $gguf, '-o', "$dir/nokv");
    ok($r->{rc} == 1 && $r->{err} =~ /^\Q$gguf\E: error: metadata key 'llama\.attention\.head_count_kv' is 2, but the spec has no parameter 'kv_heads'/m &&
       !-e "$dir/nokv", 'head_count_kv 2 and a spec without kv_heads: refused')
        or diag(Golden::how($r));
    my $mha = "$dir/mha.gguf";
    put($mha, rewrite($g, 'llama.attention.head_count_kv' => u32('llama.attention.head_count_kv', 6)));
    $r = run_cmd($kiln, 'check', $nokv, '--weights', $mha);
    ok($r->{rc} == 0, 'head_count_kv equal to head_count: the spec needs no kv_heads')
        or diag(Golden::how($r));
}

done_testing();
