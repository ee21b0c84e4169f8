#!/usr/bin/perl
# The pass manager and its command line: --list-passes, dumps around passes (--dump-before,
# --dump-after, --dump-dir), --stop-after, --emit=ir|c|dot without weights, -O0 and
# --disable-pass (and their errors), the same logits at -O0 and fully optimized for every
# example, and --report's figures against the dump and the packed blob.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Basename ();
use Golden qw(run_cmd slurp);

my $kiln = Golden::kiln();
my $dir  = Golden::tmpdir();
my $spec = 'examples/llama.kiln';

sub ok_run {
    my ($r, $label) = @_;
    my $good = $r->{rc} == 0 && !$r->{sig};
    ok($good, $label) or diag(Golden::how($r));
    return $good;
}

sub fails_cleanly {
    my ($r, $rc, $pattern, $label) = @_;
    ok(!$r->{sig} && $r->{rc} == $rc && $r->{err} =~ $pattern, $label)
        or diag(Golden::how($r));
}

sub dump_of { my $r = run_cmd($kiln, 'dump', @_); return $r->{rc} == 0 ? $r->{out} : undef }

sub spew {
    my ($file, $text) = @_;
    open my $fh, '>', $file or die "$file: $!";
    print $fh $text;
    close $fh;
}

# ---- the pipeline, as the pass manager names it in its error message
my $r = run_cmd($kiln, 'dump', $spec, '--after', 'no-such-pass');
my ($listed) = $r->{err} =~ /the pipeline is: (.*)$/m;
my @pipeline = split ' ', $listed // '';
ok(@pipeline >= 4 && "@pipeline" =~ /^widen\b.*\bmemplan$/,
   "the pipeline starts with widen and ends with memplan (@pipeline)");

# ---- --list-passes: every pass, in order, with its flags, requires and preserves
$r = run_cmd($kiln, '--list-passes');
ok_run($r, 'kiln --list-passes exits 0');
my @rows = $r->{out} =~ /^\s*\d+\s+(\S+)\s+(required|optimization|on request)\s+\S/mg;
my %flag = @rows;
my @runs = grep { $flag{$_} ne 'on request' } @pipeline;   # what a plain run runs
is(join(' ', map { $rows[2 * $_] } 0 .. $#rows / 2), "@pipeline", '--list-passes lists every pass in order');
ok(($flag{widen} // '') eq 'required' && ($flag{memplan} // '') eq 'required'
   && ($flag{cse} // '') eq 'optimization', 'widen and memplan are required, cse an optimization');
my $nreq = () = $r->{out} =~ /^\s+requires:\s+\S/mg;
my $npre = () = $r->{out} =~ /^\s+preserves:\s+\S/mg;
ok($nreq == @pipeline && $npre == @pipeline, 'each pass says what it requires and preserves');
$r = run_cmd($kiln, 'build', '--list-passes');
ok($r->{rc} == 0 && $r->{out} =~ /\bmemplan\b/, 'kiln build --list-passes prints the table too');

# ---- --dump-dir with --dump-after=all and --stop-after=codegen: no weights needed
my $dd = "$dir/dumps/nested";
$r = run_cmd($kiln, 'build', $spec, '--dump-dir', $dd, '--dump-after=all', '--stop-after=codegen',
             '-o', "$dir/prog.c");
ok_run($r, 'build --dump-dir D --dump-after=all --stop-after=codegen without --weights');
my @files = map { File::Basename::basename($_) } sort glob("$dd/*");
my @want = ('00-input.ir', (map { sprintf('%02d-%s.ir', $_ + 1, $runs[$_]) } 0 .. $#runs),
            sprintf('%02d-codegen.c', @runs + 1));
is("@files", "@want", 'one numbered file per pass, the input first, the C last (D created)');
for my $i (0 .. $#runs + 1) {
    my $f = "$dd/$want[$i]";
    my $text = slurp($f) // '';
    my $back = run_cmd($kiln, 'dump', $f);
    ok($back->{rc} == 0 && $back->{out} eq $text && $text =~ /^kiln-ir 2\n/,
       "$want[$i] reads back byte for byte (and verifies)") or diag(Golden::how($back));
    my $after = $i == 0 ? 'none' : $runs[$i - 1];
    is($text, dump_of($spec, '--after', $after) // 'x', "$want[$i] equals kiln dump --after $after");
}
my $emitted = "$dir/emit-c.c";
ok_run(run_cmd($kiln, 'emit-c', $spec, '-o', $emitted), 'kiln emit-c');
my $c = slurp($emitted);
ok(defined $c && length $c && slurp("$dir/prog.c") eq $c && slurp("$dd/$want[-1]") eq $c,
   '--stop-after=codegen writes the C of kiln emit-c to -o and into the dump folder');

# ---- --emit=c|ir|dot without --weights; both option spellings
$r = run_cmd($kiln, 'build', $spec, '--emit=c', '-o', "$dir/e.c");
ok($r->{rc} == 0 && slurp("$dir/e.c") eq $c, 'build --emit=c -o FILE.c equals kiln emit-c')
    or diag(Golden::how($r));
(my $inc = $kiln) =~ s{[^/]*$}{include};
$r = run_cmd($ENV{CC} || 'cc', '-std=c11', '-c', "-I$inc", "$dir/e.c", '-o', "$dir/e.o");
ok($r->{rc} == 0 && -s "$dir/e.o", 'the C of --emit=c compiles against the runtime headers')
    or diag(Golden::how($r));
$r = run_cmd($kiln, 'build', $spec, '--emit', 'ir', '-o', "$dir/e.ir");
ok($r->{rc} == 0 && slurp("$dir/e.ir") eq dump_of($spec), 'build --emit ir writes kiln dump\'s IR')
    or diag(Golden::how($r));
$r = run_cmd($kiln, 'build', $spec, '--emit=dot', '-o', "$dir/e.dot");
ok($r->{rc} == 0 && slurp("$dir/e.dot") eq dump_of($spec, '--dot'), 'build --emit=dot writes the Graphviz')
    or diag(Golden::how($r));
$r = run_cmd($kiln, 'build', $spec, '--emit=ir', '--wtype', 'bf16', '-o', "$dir/bf.ir");
ok($r->{rc} == 0 && slurp("$dir/bf.ir") eq dump_of($spec, '--wtype', 'bf16')
   && slurp("$dir/bf.ir") =~ /^tensor \@0 bf16\[/m, 'build --emit=ir --wtype bf16: the bf16 IR')
    or diag(Golden::how($r));
$r = run_cmd($kiln, 'build', $spec, '--stop-after', 'cse', '-o', "$dir/cse.ir");
ok($r->{rc} == 0 && slurp("$dir/cse.ir") eq dump_of($spec, '--after', 'cse'),
   'build --stop-after cse writes the IR after cse') or diag(Golden::how($r));
$r = run_cmd($kiln, 'dump', $spec, '--stop-after=cse');
is($r->{out}, dump_of($spec, '--after', 'cse'), 'dump --stop-after=cse is dump --after cse');
$r = run_cmd($kiln, 'dump', $spec, '--emit=c');
is($r->{out}, $c, 'dump --emit=c prints the C');
fails_cleanly(run_cmd($kiln, 'build', $spec, '-o', "$dir/nothing"), 2,
              qr/build needs --weights FILE/, 'build without --weights nor --emit still needs weights');
ok(!-e "$dir/nothing", '... and writes nothing');
fails_cleanly(run_cmd($kiln, 'build', $spec, '--stop-after=cse', '--emit=c', '-o', "$dir/nothing"), 2,
              qr/--emit=c writes the C of the whole pipeline/, '--emit=c with a stop at a pass');
fails_cleanly(run_cmd($kiln, 'build', $spec, '--emit=asm', '-o', "$dir/nothing"), 2,
              qr/--emit must be ir, c or dot, not 'asm'/, '--emit of an unknown kind');
fails_cleanly(run_cmd($kiln, 'build', 'tests/diag/sema-error-in-block.kiln', '--emit=c',
                      '--dump-dir', "$dir/failed", '--dump-after=all', '-o', "$dir/nothing"), 1,
              qr/error: shape mismatch/, 'a spec with an error');
ok(!-e "$dir/nothing" && !-e "$dir/failed", '... writes no output and no dumps');

# ---- one dump around one pass equals kiln dump --before/--after
for my $p (@pipeline) {
    is(dump_of($spec, "--dump-after=$p"), dump_of($spec, '--after', $p), "dump --dump-after=$p");
    is(dump_of($spec, '--dump-before', $p), dump_of($spec, '--before', $p), "dump --dump-before $p");
}
$r = run_cmd($kiln, 'build', $spec, '--dump-after=cse', '--emit=ir', '-o', "$dir/b.ir");
my ($banner, $body) = $r->{err} =~ /\A(; kiln: IR after cse)\n(.*)\z/s;
ok($r->{rc} == 0 && defined $banner && $body eq dump_of($spec, '--after', 'cse')
   && slurp("$dir/b.ir") eq dump_of($spec), 'build --dump-after=cse: the dump on stderr, the IR to -o')
    or diag(Golden::how($r));
$r = run_cmd($kiln, 'dump', $spec, '--dump-after=all');
my @docs = split /(?=^kiln-ir 2$)/m, $r->{out};
ok($r->{rc} == 0 && @docs == @runs + 1 && $docs[0] eq dump_of($spec, '--after', 'none')
   && $docs[-1] eq dump_of($spec), 'dump --dump-after=all on stdout: the input, then each pass');
$r = run_cmd($kiln, 'dump', $spec, '--dump-dir', "$dir/dd2", '--dump-before=dce');
ok($r->{rc} == 0 && $r->{out} eq dump_of($spec)
   && slurp("$dir/dd2/00-before-dce.ir") eq dump_of($spec, '--before', 'dce'),
   'dump --dump-dir --dump-before=dce: 00-before-dce.ir, and the final dump on stdout');

# ---- -O0 and --disable-pass
my %opt_pass = map { $_ => 1 } grep { $flag{$_} eq 'optimization' } @pipeline;
my @required = grep { $flag{$_} eq 'required' } @pipeline;
is(dump_of($spec, '-O0'), dump_of($spec, '--passes', join(',', @required)),
   "-O0 runs only the required passes (@required)");
is(dump_of($spec, '--disable-pass=cse'), dump_of($spec, '--passes', join(',', grep { $_ ne 'cse' } @pipeline)),
   '--disable-pass=cse runs the others');
is(dump_of($spec, '--disable-pass', 'cse,dce'), dump_of($spec, '--disable-pass=cse', '--disable-pass', 'dce'),
   '--disable-pass takes a comma list or repeats');
fails_cleanly(run_cmd($kiln, 'dump', $spec, '--disable-pass=frobnicate'), 1,
              qr/--disable-pass: no pass named 'frobnicate'/, '--disable-pass of an unknown pass');
fails_cleanly(run_cmd($kiln, 'build', $spec, '--emit=c', '-o', "$dir/nothing", '--disable-pass=memplan'), 1,
              qr/'memplan' is required .*cannot be disabled/, '--disable-pass of a required pass');
fails_cleanly(run_cmd($kiln, 'dump', $spec, '-O0', '--stop-after=cse'), 1,
              qr/the pass 'cse' does not run: skipped \(-O0\)/, '-O0 --stop-after of a pass -O0 skips');
fails_cleanly(run_cmd($kiln, 'dump', $spec, '--passes', 'cse', '-O0'), 2,
              qr/--passes runs exactly the passes it names/, '--passes does not mix with -O0');
ok(!-e "$dir/nothing", 'the refused builds wrote nothing');

# ---- every example: the same logits at -O0 and fully optimized
# Two layers keep the builds short (the sanitizer run builds them too); UniAttn keeps a
# leader with reusers, per-layer.kiln its list of one width per layer.
my %small = (uniattn => [qw(-D layers=4 -D begin=1 -D end=4 -D group_size=2)], 'per-layer' => []);
my @tokens = (1, 5, 9, 3, 7, 2, 11, 4);
for my $ex (sort glob('examples/*.kiln')) {
    (my $name = $ex) =~ s{.*/|\.kiln$}{}g;
    my $defs = $small{$name} // [qw(-D layers=2)];
    my $w = "$dir/$name.safetensors";
    ok_run(run_cmd($kiln, 'weights', $ex, @$defs, '--seed', 1, '-o', $w), "$name: kiln weights") or next;
    my %rows;
    for my $level ('-O0', 'full') {
        my $prog = "$dir/$name$level";
        my @o = $level eq '-O0' ? ('-O0') : ();
        ok_run(run_cmd($kiln, 'build', $ex, @$defs, '--weights', $w, @o, '-o', $prog),
               "$name: build $level") or next;
        my $lf = "$prog.logits";
        ok_run(run_cmd($prog, '--tokens', join(',', @tokens), '--logits', $lf), "$name: run $level")
            or next;
        $rows{$level} = Golden::read_rows($lf);
        unlink $prog;
    }
    my $ratio = Golden::max_ratio($rows{'-O0'}, $rows{full});
    ok($ratio <= $Golden::REL_TOL && @{ $rows{full} // [] } == @tokens,
       sprintf('%s: -O0 and full logits agree (worst ratio %.3g)', $name, $ratio));
}

# ---- --report: the memory plan against the dump and the blob, and the decisions
# A dump's figures: weight bytes from its tensor lines, the caches, the memory line.
sub dump_figures {
    my ($text) = @_;
    my %size = (f32 => 4, f16 => 2, bf16 => 2);
    my %f = (weights => 0, tensors => 0, caches => 0);
    for my $l (split /\n/, $text) {
        if ($l =~ /^tensor \@\d+ (\w+)\[([\d, ]+)\]/) {
            my $n = 1;
            $n *= $_ for split /,\s*/, $2;
            $f{weights} += $n * $size{$1};
            $f{tensors}++;
        }
        $f{caches}++ if $l =~ /= cache /;
        @f{qw(frame state)} = ($1, $2) if $l =~ /^memory frame (\d+) bytes, state (\d+) bytes$/;
        $f{insts}++ if $l =~ /^  %\d+ /;
    }
    return \%f;
}

# The report's figures.
sub report_figures {
    my ($text) = @_;
    my %f;
    my ($weights) = $text =~ /^weights .*?\n(.*?)\n\n/ms;
    ($f{tensors}, $f{weights}) = ($weights // '') =~ /^  total\s+(\d+)\s+(\d+)\s/m;
    $f{group_sum} = 0;
    $f{group_sum} += $1 while ($weights // '') =~ /^  (?!total|group)\S+\s+\d+\s+[\w,]+\s+(\d+)\s/mg;
    ($f{caches}, $f{cache_total}) = $text =~ /^  total: (\d+) caches\s+(\d+)\s/m;
    ($f{state}) = $text =~ /^  state of the memory plan.*?\s(\d+)\s+\S+ \S+$/m;
    ($f{frame}) = $text =~ /^  frame of the memory plan.*?\s(\d+)\s+\S+ \S+$/m;
    ($f{tmax}) = $text =~ /blocks of T<=(\d+) tokens/;
    my ($dec) = $text =~ /^decisions\n(.*)\z/ms;
    $f{decisions} = $dec // '';
    return \%f;
}

# The sum of the packed tensors' bytes in the blob appended to a program.
sub blob_bytes { return (Golden::blob_tensors($_[0]))[1] }

for my $case (['dsmoe', 'examples/dsmoe.kiln', [qw(-D layers=2)]],
              ['uniattn', 'examples/uniattn.kiln', [@{ $small{uniattn} }, '--wtype', 'bf16']],
              ['llama', $spec, [qw(-D layers=2 --max-batch 7)]]) {
    my ($name, $ex, $extra) = @$case;
    my $w = "$dir/$name.safetensors";
    my $prog = "$dir/$name.report";
    $r = run_cmd($kiln, 'build', $ex, '--weights', $w, @$extra, '--report', '-o', $prog);
    ok_run($r, "$name @$extra: build --report") or next;
    my $rep = report_figures($r->{out});
    my $d = dump_figures(dump_of($ex, @$extra));
    my $blob = blob_bytes($prog);
    ok(defined $rep->{weights} && $rep->{weights} == $d->{weights} && $rep->{weights} == $blob
       && $rep->{group_sum} == $blob && $rep->{tensors} == $d->{tensors},
       "$name: weight bytes $rep->{weights} = the dump's tensors ($d->{weights}) = the blob's ($blob) "
       . "= the sum of the groups") or diag($r->{out});
    ok(defined $rep->{state} && $rep->{state} == $d->{state} && $rep->{cache_total} == $d->{state}
       && $rep->{caches} == $d->{caches}, "$name: $rep->{caches} caches, $d->{state} state bytes")
        or diag($r->{out});
    ok(defined $rep->{frame} && $rep->{frame} == $d->{frame}
       && $rep->{tmax} == ("@$extra" =~ /--max-batch 7/ ? 7 : 64),
       "$name: frame $d->{frame} bytes, T<=$rep->{tmax}") or diag($r->{out});
    my $merged = dump_figures(dump_of($ex, @$extra, '--before', 'cse'))->{insts}
               - dump_figures(dump_of($ex, @$extra, '--after', 'cse'))->{insts};
    ok($merged > 0 && $rep->{decisions} =~ /^  cse\n    merged $merged duplicate instructions/m,
       "$name: the report lists cse's decision ($merged merged)") or diag($r->{out});
    my $chk = run_cmd($kiln, 'check', $ex, @$extra, '--report');
    my $drep = run_cmd($kiln, 'dump', $ex, @$extra, '--report');
    my $cf = report_figures($chk->{out});
    ok($chk->{rc} == 0 && $cf->{weights} == $rep->{weights} && $cf->{state} == $rep->{state}
       && $drep->{rc} == 0 && index($drep->{out}, dump_of($ex, @$extra)) == 0
       && $drep->{out} =~ /\nkiln report: model /, "$name: check --report and dump --report (after the dump)")
        or diag(Golden::how($chk));
}
# dce's notes: a weight nothing reads
$r = run_cmd($kiln, 'check', 'tests/ir/dead-code.kiln', '-w', '--report');
ok($r->{rc} == 0 && $r->{out} =~ /^  dce\n(    .*\n)*    tensor \S+ \(".*"\) is read by nothing: not packed$/m,
   'the report lists the tensors dce dropped') or diag($r->{out});
$r = run_cmd($kiln, 'check', $spec, '-O0', '--report');
ok($r->{rc} == 0 && $r->{out} =~ /^  cse\s+skipped \(-O0\)$/m && $r->{out} =~ /^  widen\s+ran\s/m
   && $r->{out} =~ /no pass recorded a decision/, 'the -O0 report: what ran and what was skipped')
    or diag($r->{out});

done_testing();
