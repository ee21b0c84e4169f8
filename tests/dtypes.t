#!/usr/bin/perl
# Weight storage types through the CLI: `kiln weights --dtype f16|bf16` writes det-weights
# rounded to that type (inspect shows it); `kiln build` keeps a checkpoint's storage type in
# the blob (half the bytes for f16/bf16) and the kernels read it, giving the logits of the
# same values widened to f32; --wtype converts when packing; --dtype / --wtype refuse what
# they cannot do.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Golden qw(run_cmd);

my $kiln = Golden::kiln();
my $dir  = Golden::tmpdir();
my $spec = 'examples/llama.kiln';

sub fails_cleanly {
    my ($r, $rc, $pattern, $label) = @_;
    ok(!$r->{sig} && $r->{rc} == $rc && $r->{err} =~ $pattern, $label)
        or diag(Golden::how($r));
}

sub no_file {
    my ($path, $label) = @_;
    opendir my $d, $dir or die;
    my @left = grep { /^\Q$path\E/ } readdir $d;
    ok(!@left, "$label: no output or temporary left");
}

# ---- kiln weights --dtype
my %files;
for my $dt ('f32', 'f16', 'bf16') {
    my $f = "$dir/w-$dt.safetensors";
    my $r = run_cmd($kiln, 'weights', $spec, '--seed', 3, '--dtype', $dt, '-o', $f);
    ok($r->{rc} == 0 && -s $f, "kiln weights --dtype $dt") or diag(Golden::how($r));
    $files{$dt} = $f;
    $r = run_cmd($kiln, 'inspect', $f);
    my $want = uc $dt;
    my @lines = grep { /^\s+\S+\s+\S+\s+\[/ } split /\n/, $r->{out};
    my @wrong = grep { !/^\s+\S+\s+\Q$want\E\s+\[/ } @lines;
    ok($r->{rc} == 0 && @lines > 0 && !@wrong, "kiln inspect lists every tensor as $want")
        or diag(Golden::how($r));
}
# a half file holds 2 bytes per weight: its data section is half the f32 one's
sub data_bytes {
    my ($f) = @_;
    open my $fh, '<:raw', $f or return -1;
    read($fh, my $len, 8) == 8 or return -1;
    return (-s $f) - 8 - unpack('Q<', $len);
}
my ($d32, $d16, $db16) = map { data_bytes($files{$_}) } 'f32', 'f16', 'bf16';
ok($d32 > 0 && $d16 * 2 == $d32 && $db16 * 2 == $d32,
   "f16 and bf16 data sections are half the f32 one ($d32, $d16, $db16 bytes)");

my $r = run_cmd($kiln, 'weights', $spec, '--dtype', 'f64', '-o', "$dir/bad.safetensors");
fails_cleanly($r, 2, qr/--dtype must be f32, f16, bf16, q8_0 or q4_0, not 'f64'/, 'kiln weights --dtype f64');
no_file('bad.safetensors', '--dtype f64');
$r = run_cmd($kiln, 'weights', 'examples/llama2c.kiln', '--format', 'llama2c', '--dtype', 'bf16',
             '-o', "$dir/bad.bin");
fails_cleanly($r, 2, qr/llama2c holds f32 only/, 'kiln weights --format llama2c --dtype bf16');
no_file('bad.bin', '--format llama2c --dtype bf16');
$r = run_cmd($kiln, 'weights', 'examples/llama2c.kiln', '--format', 'llama2c', '--dtype', 'f32',
             '-o', "$dir/ok.bin");
ok($r->{rc} == 0 && -s "$dir/ok.bin", 'kiln weights --format llama2c --dtype f32') or diag(Golden::how($r));

# The blob appended to a program: [dtype, nbytes] of each tensor entry (kiln_blob.h).
sub blob_entries { return Golden::blob_entries($_[0]) }
sub total_bytes { my $t = 0; $t += $_->[1] for @_; return $t }


# ---- kiln build keeps the checkpoint's storage type; --wtype f32 widens when packing
# (built at -O0: fold-gain stores a scaled weight rounded to its storage type, which the
# exact comparisons here are not about; tests/fold.t checks that rounding)
my (%logits, %bytes);
my @tokens = ('--tokens', join(',', map { ($_ * 37 + 11) % 256 } 0 .. 19));
sub build_and_run {
    my ($key, $weights, @extra) = @_;
    my $prog = "$dir/prog-$key";
    my $r = run_cmd($kiln, 'build', $spec, '--weights', $weights, '-o', $prog, '-O0', @extra);
    ok($r->{rc} == 0 && -x $prog, "kiln build $key") or diag(Golden::how($r));
    my $lf = "$dir/logits-$key.txt";
    $r = run_cmd($prog, @tokens, '--batch', 7, '--logits', $lf);
    my $rows = Golden::read_rows($lf);
    ok($r->{rc} == 0 && $rows && @$rows == 20, "the $key program runs") or diag(Golden::how($r));
    $logits{$key} = $rows;
    my @e = blob_entries($prog);
    $bytes{$key} = total_bytes(@e);
    return @e;
}
my %code = (f32 => 0, f16 => 1, bf16 => 2);
for my $dt ('f16', 'bf16') {
    my @kept = build_and_run($dt, $files{$dt});
    my @wide = build_and_run("$dt-as-f32", $files{$dt}, '--wtype', 'f32');
    ok(@kept && !grep({ $_->[0] != $code{$dt} } @kept), "a $dt checkpoint is packed as $dt");
    ok(@wide && !grep({ $_->[0] != 0 } @wide), "--wtype f32 packs it as f32");
    ok($bytes{$dt} > 0 && 2 * $bytes{$dt} == $bytes{"$dt-as-f32"},
       "the $dt blob holds half the bytes ($bytes{$dt} against $bytes{\"$dt-as-f32\"})");
    my $w = Golden::max_ratio($logits{$dt}, $logits{"$dt-as-f32"});
    ok($w <= 1e-6, sprintf("$dt weights read by the kernels give the logits of the same values "
                           . "widened to f32 (worst ratio %.3g)", $w));
}
# --wtype bf16 from an f32 checkpoint rounds when packing: the values of the bf16 checkpoint
build_and_run('f32-as-bf16', $files{f32}, '--wtype', 'bf16');
ok(Golden::slurp("$dir/logits-f32-as-bf16.txt") eq Golden::slurp("$dir/logits-bf16.txt"),
   '--wtype bf16 of the f32 checkpoint gives the bf16 checkpoint\'s logits exactly');
build_and_run('f32', $files{f32});
my $w = Golden::max_ratio($logits{bf16}, $logits{f32});
ok($w > 1e-6 && $w < 5e-2, sprintf('bf16 rounding moves the logits a little, never a lot (%.3g)', $w));

$r = run_cmd($kiln, 'build', $spec, '--weights', $files{f32}, '--wtype', 'q4_k', '-o', "$dir/nope");
fails_cleanly($r, 2, qr/--wtype must be f32, f16, bf16, q8_0 or q4_0, not 'q4_k'/,
              'kiln build --wtype q4_k: refused, the types named');
$r = run_cmd($kiln, '--help');
ok($r->{out} =~ /--wtype T\s+store weights as T \(f32, f16, bf16, q8_0, q4_0\) when packing;\s+default: as the checkpoint stores them/
   && $r->{out} =~ /--dtype T/ && $r->{out} =~ /--wtype-of NAME=T/ && $r->{out} =~ /--act A/,
   '--help documents --wtype, --wtype-of, --act and --dtype');
done_testing();
