#!/usr/bin/perl
# Weight loaders through the real CLI: corrupted safetensors and llama2.c files
# must make `kiln build` fail cleanly (non-zero exit, no signal), name the weight
# file on stderr, and leave no output program behind.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP ();
no warnings "portable";
use Golden;

my $dir = Golden::tmpdir();
my @D = map { ('-D', $_) } qw(dim=32 hidden=64 layers=2 heads=2 kv_heads=1 vocab=50 ctx=16);
my %spec = (st => 'examples/llama.kiln', l2c => 'examples/llama2c.kiln');

my $good_st  = "$dir/good.safetensors";
my $good_bin = "$dir/good.bin";
Golden::make_weights(spec => $spec{st}, format => 'safetensors', seed => 7, defines => \@D,
                     out => $good_st, label => 'good safetensors') or do { done_testing(); exit };
Golden::make_weights(spec => $spec{l2c}, format => 'llama2c', seed => 7, defines => \@D,
                     out => $good_bin, label => 'good llama2c') or do { done_testing(); exit };

# The good files build and run.
for my $g (['st', $good_st], ['l2c', $good_bin]) {
    my ($kind, $w) = @$g;
    my $prog = "$dir/good-$kind.prog";
    Golden::build_prog(spec => $spec{$kind}, weights => $w, out => $prog, defines => \@D,
                       label => "good $kind") or next;
    my $r = Golden::run_cmd($prog, '--tokens', '1,2,3', '-n', '2', '--temp', '0');
    ok($r->{rc} == 0 && !$r->{sig} && $r->{out} =~ /^\s*\d+\s+\d+\s*$/, "good $kind: runs")
        or diag(Golden::how($r));
}

# ---- safetensors surgery
my $st = Golden::slurp($good_st);
my $hlen = unpack 'Q<', substr($st, 0, 8);
my $htext = substr($st, 8, $hlen);
my $data = substr($st, 8 + $hlen);
my $hdr = JSON::PP::decode_json($htext);
my @tensors = sort { $hdr->{$a}{data_offsets}[0] <=> $hdr->{$b}{data_offsets}[0] }
              grep { $_ ne '__metadata__' } keys %$hdr;

sub clone { JSON::PP::decode_json(JSON::PP::encode_json($_[0])) }
sub st_bytes {    # header hashref or text, data -> file bytes
    my ($h, $d) = @_;
    my $t = ref $h ? JSON::PP->new->canonical->encode($h) : $h;
    $t .= ' ' x ((8 - length($t) % 8) % 8);
    return pack('Q<', length $t) . $t . $d;
}
sub with_header { my $h = clone($hdr); $_[0]->($h); st_bytes($h, $data) }

my $q0 = 'model.layers.0.self_attn.q_proj.weight';      # [32, 32]
my $last = $tensors[-1];
my $second = $tensors[1];

my @cases = (
    # [name, kind, bytes]
    ['st-truncated-data',   'st', substr($st, 0, 8 + $hlen + int(length($data) / 2))],
    ['st-truncated-header', 'st', substr($st, 0, 8 + int($hlen / 2))],
    ['st-short-file',       'st', substr($st, 0, 5)],
    ['st-hdrlen-past-end',  'st', pack('Q<', length($st) + 1000) . substr($st, 8)],
    ['st-hdrlen-huge',      'st', pack('Q<', 0xFFFFFFFFFFFFFFF0) . substr($st, 8)],
    ['st-hdrlen-zero',      'st', pack('Q<', 0) . substr($st, 8)],
    ['st-invalid-json',     'st', do { (my $t = $htext) =~ s/\}\s*$/ /; $t =~ s/:/;/; pack('Q<', length $t) . $t . $data }],
    ['st-header-not-object','st', st_bytes('[1,2,3]', $data)],
    ['st-offsets-past-end', 'st', with_header(sub { $_ += 64 for @{ $_[0]{$last}{data_offsets} } })],
    ['st-overlapping',      'st', with_header(sub { $_ -= 4 for @{ $_[0]{$second}{data_offsets} } })],
    ['st-begin-gt-end',     'st', with_header(sub { my $o = $_[0]{$second}{data_offsets}; @$o = reverse @$o })],
    ['st-dtype-I8',         'st', with_header(sub { $_[0]{$q0}{dtype} = 'I8' })],
    ['st-shape-mismatch',   'st', with_header(sub { $_[0]{$q0}{shape} = [16, 64] })],
    ['st-missing-tensor',   'st', with_header(sub { $_[0]{'model.norx.weight'} = delete $_[0]{'model.norm.weight'} })],
    ['st-empty',            'st', ''],
);

# ---- llama2.c surgery: header of 7 int32 (dim hidden layers heads kv_heads vocab seq_len)
my $bin = Golden::slurp($good_bin);
my @h7 = unpack 'l<7', $bin;
push @cases,
    ['l2c-truncated',     'l2c', substr($bin, 0, int(length($bin) * 0.6))],
    ['l2c-header-only',   'l2c', substr($bin, 0, 28)],
    ['l2c-short-header',  'l2c', substr($bin, 0, 12)],
    ['l2c-dim-mismatch',  'l2c', pack('l<7', 48, @h7[1 .. 6]) . substr($bin, 28)],
    ['l2c-layers-mismatch','l2c', pack('l<7', @h7[0, 1], 3, @h7[3 .. 6]) . substr($bin, 28)],
    ['l2c-untied-flag',   'l2c', pack('l<7', @h7[0 .. 4], -abs($h7[5]), $h7[6]) . substr($bin, 28)],
    ['l2c-empty',         'l2c', ''];

my %missing = (name => 'st-nonexistent', kind => 'st', file => "$dir/does-not-exist.safetensors");

sub expect_failure {
    my ($name, $kind, $file) = @_;
    my $prog = "$dir/$name.prog";
    subtest $name => sub {
        my $r = Golden::run_cmd(Golden::kiln(), 'build', $spec{$kind}, '--weights', $file,
                                '-o', $prog, @D);
        ok(!$r->{sig} && !$r->{timed_out}, 'not killed by a signal') or diag(Golden::how($r));
        ok($r->{rc} != 0, 'non-zero exit') or diag(Golden::how($r));
        (my $base = $file) =~ s{.*/}{};
        like($r->{err}, qr/\Q$base\E/, "stderr names $base");
        ok(!-e $prog, 'no output program left behind');
    };
}

for my $c (@cases) {
    my ($name, $kind, $bytes) = @$c;
    my $file = "$dir/$name." . ($kind eq 'st' ? 'safetensors' : 'bin');
    open my $fh, '>:raw', $file or die "$file: $!";
    print $fh $bytes;
    close $fh;
    expect_failure($name, $kind, $file);
}
expect_failure(@missing{qw(name kind file)});

done_testing();
