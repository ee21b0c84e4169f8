#!/usr/bin/perl
# The program's sampling options end to end (the chain itself: tests/unit/sample_test.c):
# --top-k 1 and --min-p 1 give the greedy tokens at any temperature; equal seeds give equal
# tokens with every option on; greedy decoding with --repeat-penalty R --repeat-last-n N
# gives the tokens a Perl reference computes step by step from the program's own logits
# (teacher-forced over the sequence so far, the penalty applied to the last N ids, prompt
# included), and they differ from the plain greedy ones; bad option values are usage errors
# (exit 2) naming the option; --help documents the chain's order.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Golden qw(run_cmd);

my $kiln = Golden::kiln();
my $dir  = Golden::tmpdir();
my $spec = 'examples/llama.kiln';
my @D = map { ('-D', $_) } qw(dim=32 hidden=64 layers=2 heads=4 kv_heads=2 vocab=48 ctx=64);
my $w = "$dir/w.safetensors";
my $prog = "$dir/prog";
Golden::make_weights(spec => $spec, seed => 11, defines => \@D, out => $w, label => 'llama')
    and Golden::build_prog(spec => $spec, weights => $w, out => $prog, defines => \@D,
                           label => 'llama') or BAIL_OUT('cannot build the test program');

my @prompt = (1, 7, 3, 9, 30);
sub gen {
    my (@args) = @_;
    my $r = run_cmd($prog, '--tokens', join(',', @prompt), @args);
    ok($r->{rc} == 0 && $r->{out} =~ /^[\d ]+\n$/, "runs: @args") or diag(Golden::how($r));
    return $r->{out};
}

my $greedy = gen('-n', 12, '--temp', 0);
is(gen('-n', 12, '--temp', 1.5, '--top-k', 1, '--seed', 4), $greedy, '--top-k 1 --temp 1.5: the greedy tokens');
is(gen('-n', 12, '--temp', 3, '--min-p', 1, '--seed', 9), $greedy, '--min-p 1 --temp 3: the greedy tokens');
is(gen('-n', 12, '--temp', 0, '--top-k', 5, '--top-p', 0.5, '--min-p', 0.1), $greedy,
   '--temp 0: the filters change nothing');
is(gen('-n', 12, '--temp', 0, '--repeat-penalty', 1), $greedy, '--repeat-penalty 1 is off');

my @all = ('-n', 24, '--temp', 1.2, '--top-k', 20, '--top-p', 0.95, '--min-p', 0.01,
           '--repeat-penalty', 1.3, '--repeat-last-n', 8);
my $a = gen(@all, '--seed', 77);
is(gen(@all, '--seed', 77), $a, 'every option on: the same seed gives the same tokens');
isnt(gen(@all, '--seed', 78), $a, 'another seed gives other tokens');
isnt(gen('-n', 24, '--temp', 1.2, '--seed', 77), $greedy, '--temp 1.2 samples (not the greedy tokens)');

# greedy with the penalty against a reference on the program's own logits
sub last_row {
    my (@seq) = @_;
    my $lf = "$dir/rows.txt";
    my $r = run_cmd($prog, '--tokens', join(',', @seq), '--logits', $lf);
    return undef unless $r->{rc} == 0;
    my @rows = grep { /\S/ } split /\n/, Golden::slurp($lf);
    return [ split ' ', $rows[-1] ];
}
my ($R, $N, $steps) = (1.8, 6, 12);
my @seq = @prompt;
for (1 .. $steps) {
    my $row = last_row(@seq) or last;
    my %recent = map { $_ => 1 } @seq[ ($#seq - $N + 1 < 0 ? 0 : $#seq - $N + 1) .. $#seq ];
    my @l = map { $recent{$_} ? ($row->[$_] > 0 ? $row->[$_] / $R : $row->[$_] * $R) : $row->[$_] }
            0 .. $#$row;
    my $best = 0;
    $l[$_] > $l[$best] and $best = $_ for 1 .. $#l;
    push @seq, $best;
}
my $want = join(' ', @seq[ @prompt .. $#seq ]) . "\n";
my $got = gen('-n', $steps, '--temp', 0, '--repeat-penalty', $R, '--repeat-last-n', $N);
is($got, $want, "--temp 0 --repeat-penalty $R --repeat-last-n $N: the reference's tokens");
isnt($got, $greedy, '... which differ from the plain greedy ones');

# usage errors
for my $c (['--top-k', '-1', qr/--top-k: -1 is out of range/],
           ['--top-k', 'x', qr/--top-k: 'x' is not an integer/],
           ['--min-p', '1.5', qr/--min-p: 1\.5 is out of range \[0, 1\]/],
           ['--min-p', 'nan', qr/--min-p: 'nan' is not a finite number/],
           ['--repeat-penalty', '0', qr/--repeat-penalty: must be greater than 0/],
           ['--repeat-penalty', '-2', qr/--repeat-penalty: -2 is out of range/],
           ['--repeat-last-n', '-1', qr/--repeat-last-n: -1 is out of range/],
           ['--top-p', '0', qr/--top-p: must be greater than 0/]) {
    my ($opt, $v, $re) = @$c;
    my $r = run_cmd($prog, '--tokens', '1,2', $opt, $v);
    ok($r->{rc} == 2 && !$r->{sig} && $r->{err} =~ $re && $r->{out} eq '',
       "$opt $v: usage error naming the option") or diag(Golden::how($r));
}
my $r = run_cmd($prog, '--help');
like($r->{out}, qr/--top-k K.*--min-p P.*--repeat-penalty R.*--repeat-last-n N/s, '--help lists the options');
like($r->{out}, qr/repeat penalty, top-k, top-p, min-p, temperature, draw/, '--help gives the chain\'s order');

done_testing();
