#!/usr/bin/perl
# specs.pl [SEED] [COUNT] - mutation fuzzing of the compiler's front end and C emitter.
#
# Mutates the example specs token by token (deletes, replaces, duplicates, swaps) and runs
# `kiln dump` on each mutant under the sanitizer build; every spec it accepts is also
# emitted as C and compiled (-fsyntax-only). A signal, a sanitizer report, an internal error,
# or C that does not compile is a bug: the mutant is kept in build/fuzz/. Not part of the
# suite (it takes minutes): `ninja fuzz`, or run it directly after `ninja all asan`.
use strict;
use warnings;
use File::Path qw(make_path);

my ($seed, $count) = (@ARGV, 1, 2000)[0, 1];
srand $seed;
my $kiln = $ENV{KILN} // 'build/asan/kiln';
my $out  = 'build/fuzz';
make_path($out);
$ENV{ASAN_OPTIONS} = 'detect_leaks=0';

my @sources = map { local (@ARGV, $/) = $_; <> }
    qw(examples/llama.kiln examples/dsmoe.kiln examples/finedeep.kiln examples/uniattn.kiln
       examples/llama2c.kiln tests/ops/allops.kiln);
my $token = qr/\s+|#[^\n]*|"[^"\n]*"|\d+\.\d+(?:[eE][-+]?\d+)?|\d+|[A-Za-z_]\w*|\.\.|&&|\|\||[<>=!]=|./s;
my @words = (',', qw(0 -1 1 2 99999999 1.5 l e dim heads x [ ] ( ) : + * - / sum where if for
               in 0..2 "half" token embed wq cache softmax linear rope attn_apply attn_scores
               count max ? ! &&));

sub run {
    my ($cmd) = @_;
    my $text = `$cmd 2>&1`;
    return ($?, $text);
}

my $bugs = 0;
for my $i (1 .. $count) {
    my @t = $sources[rand @sources] =~ /($token)/g;
    for (1 .. 1 + int rand 4) {
        my $k = int rand @t;
        my $r = rand;
        if    ($r < 0.3) { $t[$k] = '' }
        elsif ($r < 0.6) { $t[$k] = $words[rand @words] }
        elsif ($r < 0.8) { splice @t, $k, 0, $t[rand @t] }
        else             { my $j = int rand @t; @t[$k, $j] = @t[$j, $k] }
    }
    my $spec = "$out/mutant.kiln";
    open my $fh, '>', $spec or die "$spec: $!";
    print $fh join '', @t;
    close $fh;
    my ($st, $text) = run("$kiln dump $spec");
    my $bad = ($st & 127) || ($st >> 8) > 2 || $text =~ /internal error|Sanitizer|runtime error/;
    if (!$bad && $st == 0) {
        my ($st2, $t2) = run("build/kiln emit-c $spec -o $out/mutant.c && "
                             . "cc -std=c11 -fsyntax-only -Ibuild/include $out/mutant.c");
        ($bad, $text) = (1, $t2) if $st2;
    }
    next unless $bad;
    $bugs++;
    rename $spec, "$out/bug-$seed-$i.kiln";
    print "bug: $out/bug-$seed-$i.kiln\n", substr($text, -800), "\n";
}
print "$count mutants, $bugs bugs\n";
exit($bugs ? 1 : 0);
