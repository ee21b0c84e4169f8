#!/usr/bin/perl
# The model as a C library (kiln build --lib) and the blob apart from the program (--blob).
# Two models, examples/llama.kiln (named llama by its spec) and examples/llama2c.kiln (built
# --name beta, small --max-batch so that evals split into blocks), become libraries that one
# C program (tests/unit/library_test.c) links together: two contexts of llama (1 and 2
# threads) and one of beta run at once on their own threads, and their logits must equal,
# bit for bit, those of the same models built as programs (PROG --logits), their greedy ids
# those of PROG -n. nm: only NAME_* symbols are defined globals. An embedded blob opens with
# a NULL path. Failures: another model's blob, a missing one, eval beyond the context, a bad
# token, --lib onto a file, a failed build (no folder left). DSMoE's run-time parameter tau
# set through the library gives the logits of PROG --set. --blob FILE: the program
# without the blob runs with PROG --blob FILE as the whole program does. examples/embed.c
# builds and prints what PROG -n 16 prints.
# Under the sanitizer build (KILN=build/asan/kiln) the programs link with the flags the
# header's link line names (the library's objects are sanitized).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Golden qw(run_cmd slurp);

my $kiln = Golden::kiln();
my $dir  = Golden::tmpdir();
my $cc   = $ENV{CC} // 'cc';

my @DA = map { ('-D', $_) } qw(layers=2 ctx=32);
my @DB = map { ('-D', $_) } qw(layers=2 vocab=300 ctx=48);
my ($wa, $wb) = ("$dir/a.safetensors", "$dir/b.safetensors");
Golden::make_weights(spec => 'examples/llama.kiln', defines => \@DA, seed => 3, out => $wa,
                     label => 'llama') or BAIL_OUT('no weights');
Golden::make_weights(spec => 'examples/llama2c.kiln', defines => \@DB, seed => 4, out => $wb,
                     label => 'llama2c') or BAIL_OUT('no weights');
my @A = ('examples/llama.kiln', @DA, '--weights', $wa, '--max-batch', 8);
my @B = ('examples/llama2c.kiln', @DB, '--weights', $wb, '--max-batch', 4);

sub build_ok {
    my ($what, @args) = @_;
    my $r = run_cmd($kiln, 'build', @args);
    ok($r->{rc} == 0, "kiln build $what") or diag(Golden::how($r));
    return $r->{rc} == 0;
}

build_ok('llama, a program', @A, '-o', "$dir/prog_a") or BAIL_OUT('no program');
build_ok('llama2c, a program', @B, '-o', "$dir/prog_b") or BAIL_OUT('no program');
build_ok('llama --lib', @A, '--lib', '-o', "$dir/lib_a") or BAIL_OUT('no library');
build_ok('llama --lib --embed-blob', @A, '--lib', '--embed-blob', '-o', "$dir/lib_ae")
    or BAIL_OUT('no library');
build_ok('llama2c --lib --name beta --embed-blob', @B, '--lib', '--name', 'beta',
         '--embed-blob', '-o', "$dir/lib_b") or BAIL_OUT('no library');

is(join(' ', sort map { s{.*/}{}r } glob("$dir/lib_a/*")), 'libllama.a llama.h llama.kblob',
   '--lib: the header, the archive and the blob');
is(join(' ', sort map { s{.*/}{}r } glob("$dir/lib_b/*")), 'beta.h libbeta.a',
   '--embed-blob: the blob is inside the archive');
ok(!glob("$dir/*.kiln-*"), 'no work folder left beside the outputs');

# only NAME_* symbols are defined globals, the 24 functions of the header
for my $lib (["$dir/lib_a/libllama.a", 'llama'], ["$dir/lib_b/libbeta.a", 'beta']) {
    my ($path, $name) = @$lib;
    my $nm = run_cmd('nm', '-g', '--defined-only', $path);
    my @syms = map { (split ' ')[-1] } grep { /^[0-9a-f]+ [A-Za-z] / } split /\n/, $nm->{out};
    my @other = grep { !/^${name}_/ } @syms;
    ok($nm->{rc} == 0 && !@other, "nm $name: no global but ${name}_*")
        or diag("others: @other");
    is(scalar @syms, 24, "nm $name: the 24 functions of $name.h");
}

# how a program links the library: the header's link line, with this kiln's extra flags
my ($link_flags) = (slurp("$dir/lib_a/llama.h") // '') =~ /^ \*   link:  cc app\.c -IDIR DIR\/libllama\.a -lm -lpthread(.*)$/m;
ok(defined $link_flags, 'llama.h: the tutorial gives the link line');
my @extra = split ' ', $link_flags // '';
note("extra link flags: @extra") if @extra;

sub link_test {
    my ($out, $liba) = @_;
    my $r = run_cmd($cc, '-std=c11', '-Wall', '-Wextra', '-Werror', '-o', $out,
                    "-I$liba", "-I$dir/lib_b", 'tests/unit/library_test.c', "$liba/libllama.a",
                    "$dir/lib_b/libbeta.a", '-lm', '-lpthread', @extra);
    ok($r->{rc} == 0, "library_test links llama ($liba) and beta") or diag(Golden::how($r));
    return $r->{rc} == 0;
}
link_test("$dir/two", "$dir/lib_a") or BAIL_OUT('cannot link');
link_test("$dir/two_embedded", "$dir/lib_ae") or BAIL_OUT('cannot link');

my $ta = join ',', map { (7 * $_ + 3) % 256 } 0 .. 18;   # 19 tokens: blocks of 8
my $tb = join ',', map { (11 * $_ + 1) % 300 } 0 .. 9;   # 10 tokens: blocks of 4
my $ngen = 5;
my %want;
for my $p (['a', $ta], ['b', $tb]) {
    my ($k, $tok) = @$p;
    my $r = run_cmd("$dir/prog_$k", '--tokens', $tok, '--logits', "$dir/want_$k.txt");
    ok($r->{rc} == 0, "prog_$k --logits") or diag(Golden::how($r));
    $r = run_cmd("$dir/prog_$k", '--tokens', $tok, '-n', $ngen);
    ($want{$k} = $r->{out} // '') =~ s/\s+$//;
}

for my $case (["$dir/two", "$dir/lib_a/llama.kblob", 'a blob file'],
              ["$dir/two_embedded", '-', 'the embedded blob (NULL path)']) {
    my ($prog, $blob, $how) = @$case;
    my $r = run_cmd($prog, 'run', $blob, '-', $ta, $tb, $ngen, "$dir/got_a.txt", "$dir/got_b.txt");
    ok($r->{rc} == 0, "library_test run, llama from $how") or diag(Golden::how($r));
    ok(slurp("$dir/got_a.txt") eq (slurp("$dir/want_a.txt") // 'none'),
       "llama ($how): the library's logits equal the program's, bit for bit");
    ok(slurp("$dir/got_b.txt") eq (slurp("$dir/want_b.txt") // 'none'),
       'beta (embedded): the library\'s logits equal the program\'s, bit for bit');
    like($r->{out}, qr/^llama: \Q$want{a}\E$/m, "llama ($how): greedy ids as PROG -n $ngen");
    like($r->{out}, qr/^beta: \Q$want{b}\E$/m, "beta: greedy ids as PROG -n $ngen");
    unlink "$dir/got_a.txt", "$dir/got_b.txt";
}

# --blob: the blob apart; the program alone needs PROG --blob FILE
build_ok('llama2c --blob FILE -o PROG', @B, '--blob', "$dir/b.kblob", '-o', "$dir/prog_b_alone");
my $r = run_cmd("$dir/prog_b_alone", '--blob', "$dir/b.kblob", '--tokens', $tb, '--logits',
                "$dir/alone_b.txt");
ok($r->{rc} == 0 && slurp("$dir/alone_b.txt") eq slurp("$dir/want_b.txt"),
   'PROG --blob FILE: the logits of the program with its blob appended')
    or diag(Golden::how($r));
$r = run_cmd("$dir/prog_b_alone", '--tokens', $tb);
ok($r->{rc} == 1 && $r->{err} =~ /no weight blob appended.*--blob FILE/,
   'the program built with --blob says it needs --blob FILE') or diag(Golden::how($r));
ok(-s "$dir/prog_b_alone" < -s "$dir/prog_b", 'and it is smaller than the whole program');
$r = run_cmd($kiln, 'build', @B, '--blob', "$dir/b3.kblob", '-o', "$dir/no/such/prog");
ok($r->{rc} != 0 && !-e "$dir/b3.kblob" && !glob("$dir/b3.kblob*"),
   '--blob with a program that cannot be written: no blob either') or diag(Golden::how($r));
build_ok('llama2c --blob FILE (no -o)', @B, '--blob', "$dir/b2.kblob");
ok(slurp("$dir/b2.kblob") eq slurp("$dir/b.kblob"), '--blob without -o: the same blob, alone');

# failures a caller causes: clear codes and messages
$r = run_cmd("$dir/two", 'errors', "$dir/lib_a/llama.kblob", "$dir/b.kblob");
ok($r->{rc} == 0, 'library_test errors') or diag(Golden::how($r));
my $out = $r->{out} // '';
like($out, qr/^wrong-blob rc=-2 weight blob: \Q$dir\E\/b\.kblob: tensor 0 'model\.embed_tokens\.weight': dimension 0 is 300, expected 256$/m,
     "another model's blob: llama_ERR_BLOB, naming the file and the mismatch");
like($out, qr{^missing-blob rc=-2 weight blob: cannot open /nonexistent/llama\.kblob: No such file}m,
     'a missing blob: llama_ERR_BLOB, naming the file');
like($out, qr/^sample-first rc=-6 sample: no logits yet/m, 'sampling before eval: ERR_NO_LOGITS');
like($out, qr/^gap rc=-4 eval: position 5, but positions 0 \.\. -1 hold tokens \(no gaps\)$/m,
     'eval at a gap: llama_ERR_RANGE');
like($out, qr/^beyond-ctx rc=-4 eval: 33 tokens at position 0 go beyond the context of 32 positions$/m,
     'eval beyond the context: llama_ERR_RANGE');
like($out, qr/^bad-token rc=-4 eval: token 0 is 256, outside the vocabulary \[0, 256\)$/m,
     'a token outside the vocabulary: llama_ERR_RANGE');
like($out, qr/^context-full rc=-4 eval: 1 tokens at position 32 go beyond/m,
     'a full context: llama_ERR_RANGE');
like($out, qr/^after-reset rc=0 pos=2$/m, 'reset: position 0 again');
like($out, qr/^encode rc=-5 the weight blob carries no tokenizer$/m,
     'encode without a tokenizer: llama_ERR_NO_TOKENIZER');
like($out, qr/^set-param rc=-1 set_param: the model 'llama' has no run-time parameter 'no_such_param' \(it has none\)$/m,
     'an unknown run-time parameter: llama_ERR_ARGUMENT');

# a run-time parameter: DSMoE's tau through dsmoe_set_param, against PROG --set tau=0.3
my @DM = map { ('-D', $_) } qw(layers=2 ctx=16);
my $wm = "$dir/m.safetensors";
Golden::make_weights(spec => 'examples/dsmoe.kiln', defines => \@DM, seed => 5, out => $wm,
                     label => 'dsmoe') or BAIL_OUT('no weights');
my @M = ('examples/dsmoe.kiln', @DM, '--weights', $wm);
build_ok('dsmoe, a program', @M, '-o', "$dir/prog_m");
build_ok('dsmoe --lib --embed-blob', @M, '--lib', '--embed-blob', '-o', "$dir/lib_m");
open my $cfh, '>', "$dir/param.c" or die;
print $cfh <<'C';
#include <stdio.h>
#include "dsmoe.h"
int main(void)
{
    dsmoe_model *m;
    dsmoe_context *c;
    int32_t tokens[5] = {3, 1, 4, 1, 5};
    static float logits[5 * 256];
    if (dsmoe_open(&m, NULL) || dsmoe_context_new(m, 1, &c) ||
        dsmoe_set_param(c, "tau", 0.3f) || dsmoe_eval(c, tokens, 5, 0, logits))
        return 1;
    for (int t = 0; t < 5; t++) {
        for (int i = 0; i < 256; i++)
            printf(i ? " %.9g" : "%.9g", (double)logits[t * 256 + i]);
        printf("\n");
    }
    dsmoe_context_free(c);
    dsmoe_close(m);
    return 0;
}
C
close $cfh;
$r = run_cmd($cc, '-std=c11', '-Wall', '-Wextra', '-Werror', "-I$dir/lib_m", "$dir/param.c", "$dir/lib_m/libdsmoe.a", '-lm',
             '-lpthread', @extra, '-o', "$dir/param");
ok($r->{rc} == 0, 'a program of dsmoe_set_param links') or diag(Golden::how($r));
my $got_m = run_cmd("$dir/param")->{out};
my $want_m = run_cmd("$dir/prog_m", '--tokens', '3,1,4,1,5', '--set', 'tau=0.3', '--logits', '-')->{out};
my $default_m = run_cmd("$dir/prog_m", '--tokens', '3,1,4,1,5', '--logits', '-')->{out};
ok(length($want_m // '') > 0 && ($got_m // '') eq $want_m,
   'dsmoe_set_param(c, "tau", 0.3): the logits of PROG --set tau=0.3');
isnt($want_m, $default_m, 'and tau 0.3 changes them');

# --lib onto a file, and a failed build: nothing written
open my $fh, '>', "$dir/afile" or die;
print $fh "keep\n";
close $fh;
$r = run_cmd($kiln, 'build', @A, '--lib', '-o', "$dir/afile");
ok($r->{rc} != 0 && $r->{err} =~ /\Q$dir\E\/afile exists and is not a folder/,
   '--lib onto a file: refused, naming it') or diag(Golden::how($r));
is(slurp("$dir/afile"), "keep\n", 'the file is unchanged');
$r = run_cmd($kiln, 'build', 'examples/llama.kiln', @DB, '--weights', $wa, '--lib', '-o',
             "$dir/lib_bad");
ok($r->{rc} != 0 && !-e "$dir/lib_bad" && !glob("$dir/lib_bad.kiln-*"),
   'a failed --lib build leaves no folder') or diag(Golden::how($r));
$r = run_cmd($kiln, 'build', @A, '--name', '9lives', '--lib', '-o', "$dir/lib_n");
ok($r->{rc} == 2 && $r->{err} =~ /--name 9lives: not a C identifier/ && !-e "$dir/lib_n",
   '--name must be a C identifier') or diag(Golden::how($r));
$r = run_cmd($kiln, 'build', @A, '--embed-blob', '-o', "$dir/p_e");
ok($r->{rc} == 2 && $r->{err} =~ /--embed-blob goes with --lib/, '--embed-blob needs --lib')
    or diag(Golden::how($r));

# a second build into the same folder replaces its files
build_ok('llama --lib again into the same folder', @A, '--lib', '-o', "$dir/lib_a");

# examples/embed.c: built as its comment says, prints what the program prints
$r = run_cmd($cc, '-std=c11', '-Wall', '-Wextra', '-Werror', 'examples/embed.c',
             "-I$dir/lib_a", "$dir/lib_a/libllama.a", '-lm', '-lpthread', @extra, '-o', "$dir/embed");
ok($r->{rc} == 0, 'examples/embed.c builds') or diag(Golden::how($r));
$r = run_cmd("$dir/embed", "$dir/lib_a/llama.kblob", $ta);
my $gen16 = run_cmd("$dir/prog_a", '--tokens', $ta, '-n', 16)->{out} // '';
is($r->{out}, $gen16, 'embed prints the greedy ids of PROG -n (up to the full context)');

done_testing();
