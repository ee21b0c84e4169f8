#!/usr/bin/perl
# The fuzz targets' seed corpora and every input that ever crashed one (tests/fuzz/corpus/,
# tests/fuzz/regress/), replayed through each target's entry point built without libFuzzer
# ($KILN_BUILD/tests/fuzz_TARGET: tests/fuzz/replay.c's main; under the ASan build, with
# AddressSanitizer and UBSan). Each run must end normally after every input: no signal, no
# sanitizer report, no internal error. Fuzzing itself is `ninja fuzz` (README, FUZZING).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Golden;

my $b = $ENV{KILN_BUILD} // 'build';
my @targets = qw(spec ir_read safetensors gguf llama2c tokenizer_bin tokenizer_json ktok blob
                 prog_args kiln_args);

for my $t (@targets) {
    my @dirs = grep { -d } "tests/fuzz/corpus/$t", "tests/fuzz/regress/$t";
    my $n = 0;
    for my $d (@dirs) {
        opendir my $dh, $d or die "$d: $!";
        $n += grep { !/^\./ && -f "$d/$_" } readdir $dh;
    }
    subtest $t => sub {
        my $exe = "$b/tests/fuzz_$t";
        ok(-x $exe, "$exe exists (build the project first)") or return;
        ok(-d "tests/fuzz/corpus/$t" && $n > 0, "$t has a seed corpus");
        my $r = Golden::run_cmd($exe, @dirs);
        is($r->{sig}, 0, "$t: no signal");
        is($r->{rc}, 0, "$t: exit status 0") or diag(substr($r->{err}, -3000));
        like($r->{out}, qr/^$n inputs$/m, "$t: all $n inputs replayed");
        unlike($r->{err}, qr/ERROR: \w+Sanitizer|runtime error:|internal error/,
               "$t: no sanitizer report, no internal error");
    };
}
done_testing();
