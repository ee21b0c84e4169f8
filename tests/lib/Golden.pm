package Golden;
# Shared helpers for kiln's Perl tests: run commands, load golden fixtures
# (tests/golden/NAME.golden, format in tests/golden/README.md), build a model
# with the real CLI and compare its output with the golden figures.
#
#   use lib 'tests/lib';
#   use Golden;
#   my $dir = Golden::tmpdir();
#   Golden::golden_case(name => 'dense-mha-tiny', spec => 'examples/llama2c.kiln',
#                       format => 'llama2c', dir => $dir);
use strict;
use warnings;
use Exporter 'import';
use File::Temp ();
use File::Spec;
use POSIX ();
use Test::More;

our @EXPORT_OK = qw(kiln run_cmd tmpdir load_golden golden_defines make_weights
                    build_prog golden_case read_rows kv_report_layers parse_stats slurp
                    write_file);

use Cwd ();
use File::Basename ();

# Paths in the tests (build/kiln, examples/*.kiln, tests/golden) are relative to
# the repository root: resolve $KILN against the caller's directory, then work
# from the root whatever directory prove was started in.
our $KILN = $ENV{KILN} // 'build/kiln';
our $ROOT;
BEGIN {
    $ROOT = Cwd::abs_path(File::Basename::dirname(__FILE__) . '/../..');
}
$KILN = Cwd::abs_path($KILN) // $KILN if $KILN =~ m{/} && -e $KILN && defined $ENV{KILN};
chdir $ROOT or die "cannot chdir to $ROOT: $!";
our $TIMEOUT = $ENV{KILN_TEST_TIMEOUT} // 300;     # seconds per command
our $GOLDEN_DIR = $ENV{KILN_GOLDEN_DIR} // 'tests/golden';
our $REL_TOL    = 1e-4;    # max |diff| <= 1e-4 * max |golden logit| of the row
our $MARGIN_MIN = 1e-3;    # greedy / argmax steps below this margin may differ

sub kiln { return $KILN }

# A temporary directory, removed when the test script exits.
sub tmpdir { return File::Temp::tempdir('kiln-test-XXXXXX', TMPDIR => 1, CLEANUP => 1) }

sub slurp {
    my ($f) = @_;
    open my $fh, '<', $f or return undef;
    binmode $fh;
    local $/;
    my $s = <$fh>;
    close $fh;
    return $s // '';
}

# write_file(PATH, BYTES) -> PATH: the bytes as they are (dies on a failure).
sub write_file {
    my ($path, $bytes) = @_;
    open my $fh, '>:raw', $path or die "$path: $!";
    print $fh $bytes;
    close $fh or die "$path: $!";
    return $path;
}

# run_cmd(@argv): runs argv directly (no shell), stdin from /dev/null.
# Returns { rc, sig, out, err, cmd, timed_out }.  sig is the terminating signal (0 if none).
sub run_cmd {
    my @cmd = @_;
    my ($ofh, $ofile) = File::Temp::tempfile('kiln-out-XXXXXX', TMPDIR => 1, UNLINK => 1);
    my ($efh, $efile) = File::Temp::tempfile('kiln-err-XXXXXX', TMPDIR => 1, UNLINK => 1);
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if (!$pid) {
        open STDIN,  '<',  '/dev/null';
        open STDOUT, '>&', $ofh or POSIX::_exit(126);
        open STDERR, '>&', $efh or POSIX::_exit(126);
        { no warnings "exec"; exec { $cmd[0] } @cmd; }
        print STDERR "cannot exec $cmd[0]: $!\n";
        POSIX::_exit(127);
    }
    my $timed_out = 0;
    {
        local $SIG{ALRM} = sub { $timed_out = 1; kill 'KILL', $pid };
        alarm $TIMEOUT;
        waitpid $pid, 0;
        alarm 0;
    }
    my $st = $?;
    close $ofh;
    close $efh;
    my %r = (rc => $st >> 8, sig => $st & 127, out => slurp($ofile), err => slurp($efile),
             cmd => join(' ', @cmd), timed_out => $timed_out);
    unlink $ofile, $efile;
    return \%r;
}

# One-line description of how a command ended, for diagnostics.
sub how {
    my ($r) = @_;
    my $s = $r->{timed_out} ? "timed out after ${TIMEOUT}s"
          : $r->{sig}       ? "killed by signal $r->{sig}"
          :                   "exit $r->{rc}";
    my $err = $r->{err} // '';
    $err = substr($err, 0, 2000) . "...\n" if length $err > 2000;
    return "$r->{cmd}\n  -> $s\n  stderr: $err";
}

# ---------------------------------------------------------------- fixtures

# load_golden(NAME or PATH) -> hashref:
#   name arch rope format producer seed (strings)
#   config => { key => text }, config_keys => [ordered keys]
#   tokens positions argmax margins greedy_prompt greedy_tokens greedy_margins
#   active_fraction tokens_without_expert leaders (array refs of strings)
#   reusers => { layer => leader }
#   logits => { position => [row values as text] }, logit_positions => [order]
sub load_golden {
    my ($name) = @_;
    my $path = $name =~ m{/|\.golden$} ? $name : "$GOLDEN_DIR/$name.golden";
    open my $fh, '<', $path or die "cannot open golden $path: $!";
    my %g = (path => $path, logits => {}, logit_positions => [], config => {}, config_keys => []);
    while (my $line = <$fh>) {
        chomp $line;
        next if $line =~ /^\s*(#|$)/;
        my ($key, $rest) = split /\s+/, $line, 2;
        $rest //= '';
        if ($key eq 'logits') {
            my ($pos, @v) = split ' ', $rest;
            $g{logits}{$pos} = \@v;
            push @{ $g{logit_positions} }, $pos;
        } elsif ($key eq 'config') {
            for my $kv (split ' ', $rest) {
                my ($k, $v) = split /=/, $kv, 2;
                $g{config}{$k} = $v;
                push @{ $g{config_keys} }, $k;
            }
        } elsif ($key eq 'reusers') {
            $g{reusers} = { map { split /:/, $_, 2 } split ' ', $rest };
        } elsif ($key =~ /^(tokens|positions|argmax|margins|greedy_prompt|greedy_tokens|
                            greedy_margins|active_fraction|tokens_without_expert|leaders)$/x) {
            $g{$key} = [ split ' ', $rest ];
        } else {
            $g{$key} = $rest;
        }
    }
    close $fh;
    for my $k (qw(name tokens positions greedy_prompt greedy_tokens greedy_margins)) {
        die "golden $path: missing '$k'" unless defined $g{$k};
    }
    return \%g;
}

# -D options for the golden's config: every config key but head_dim, seq_len -> ctx.
# Returns a list ('-D', 'dim=64', '-D', ...).
my %DEFINE_NAME = (seq_len => 'ctx', tied_classifier => 'tied', norm_eps => 'eps');
my %NOT_A_PARAM = (head_dim => 1);
sub golden_defines {
    my ($g) = @_;
    my @d;
    for my $k (@{ $g->{config_keys} }) {
        next if $NOT_A_PARAM{$k};
        push @d, '-D', ($DEFINE_NAME{$k} // $k) . '=' . $g->{config}{$k};
    }
    return @d;
}

# ---------------------------------------------------------------- CLI steps

# make_weights(spec => , format => 'safetensors'|'llama2c', seed => , defines => [...],
#              out => FILE, label => ) -> true on success (one assertion)
sub make_weights {
    my %o = @_;
    my @fmt = ($o{format} // 'safetensors') eq 'llama2c' ? ('--format', 'llama2c') : ();
    my $r = run_cmd($KILN, 'weights', $o{spec}, @{ $o{defines} // [] },
                    '--seed', $o{seed} // 1, @fmt, '-o', $o{out});
    my $good = $r->{rc} == 0 && !$r->{sig} && -s $o{out};
    ok($good, "$o{label}: kiln weights") or diag(how($r));
    return $good;
}

# build_prog(spec =>, weights =>, out =>, defines => [...], label =>) -> true on success
sub build_prog {
    my %o = @_;
    my $r = run_cmd($KILN, 'build', $o{spec}, '--weights', $o{weights}, '-o', $o{out},
                    @{ $o{defines} // [] }, @{ $o{flags} // [] });
    my $good = $r->{rc} == 0 && !$r->{sig} && -x $o{out};
    ok($good, "$o{label}: kiln build") or diag(how($r));
    return $good;
}

# read_rows(FILE) -> [ [fields...], ... ]  one array per non-empty line
sub read_rows {
    my ($file) = @_;
    open my $fh, '<', $file or return undef;
    my @rows;
    while (my $l = <$fh>) {
        next unless $l =~ /\S/;
        push @rows, [ split ' ', $l ];
    }
    close $fh;
    return \@rows;
}

my $NUM = qr/^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$/;

# Compare one row with a golden row: returns (ok, ratio, detail).
# compare_rows(ROWS, [[position, want_row], ...]) -> (worst ratio, its position, failures):
# each wanted row against ROWS->[position] with compare_row.
sub compare_rows {
    my ($rows, $wanted) = @_;
    my ($worst, $at, @fails) = (0, '-');
    for my $pw (@$wanted) {
        my ($p, $want) = @$pw;
        my $got = $rows->[$p];
        if (!$got) { push @fails, "position $p: no row"; next }
        my ($good, $ratio, $detail) = compare_row($got, $want);
        ($worst, $at) = ($ratio, $p) if $ratio > $worst || $ratio != $ratio;
        push @fails, "position $p: $detail" unless $good;
    }
    return ($worst, $at, @fails);
}

# max_ratio(ROWS, WANT_ROWS) -> the worst compare_row ratio over two row lists of one
# length (infinite when the counts differ): one program's logits against another's.
sub max_ratio {
    my ($got, $want) = @_;
    return 9**9**9 unless $got && $want && @$got == @$want;
    my ($worst) = compare_rows($got, [ map { [$_, $want->[$_]] } 0 .. $#$want ]);
    return $worst;
}

sub compare_row {
    my ($got, $want) = @_;
    return (0, 9**9**9, 'length ' . scalar(@$got) . ', want ' . scalar(@$want))
        if @$got != @$want;
    my ($rowmax, $maxdiff, $at, $bad) = (0, 0, -1, undef);
    for my $i (0 .. $#$want) {
        my $w = $want->[$i];
        my $g = $got->[$i];
        if ($g !~ $NUM) { $bad //= "non-numeric '$g' at index $i"; next }
        my $d = abs($g - $w);
        ($maxdiff, $at) = ($d, $i) if $d > $maxdiff;
        $rowmax = abs($w) if abs($w) > $rowmax;
    }
    return (0, 9**9**9, $bad) if defined $bad;
    my $ratio = $rowmax > 0 ? $maxdiff / $rowmax : $maxdiff;
    return ($maxdiff <= $REL_TOL * $rowmax, $ratio,
            sprintf('max |diff| %.3g at index %d (got %s, want %s), row max %.4g',
                    $maxdiff, $at, $at >= 0 ? $got->[$at] : '-', $at >= 0 ? $want->[$at] : '-',
                    $rowmax));
}

sub argmax_of {
    my ($row) = @_;
    my ($best, $bi) = (undef, -1);
    for my $i (0 .. $#$row) {
        next unless $row->[$i] =~ $NUM;
        ($best, $bi) = ($row->[$i], $i) if !defined $best || $row->[$i] > $best;
    }
    return $bi;
}

# golden_case(name =>, spec =>, format => 'safetensors'|'llama2c', dir =>,
#             weights => FILE (optional: generated if absent), label =>, stats => 1,
#             defines => [extra -D pairs], build_flags => [more kiln build flags: -O0])
# Runs: weights, build, teacher-forced logits (with --stats when asked), greedy.
# Returns { prog, weights, golden, logits (file), stats_err (stderr of the
# teacher-forced run), ok }.
sub golden_case {
    my %o = @_;
    my $g = ref $o{golden} ? $o{golden} : load_golden($o{name});
    my $name = $g->{name};
    my $fmt = $o{format} // 'safetensors';
    my $label = $o{label} // "$name ($fmt)";
    my $dir = $o{dir} // tmpdir();
    (my $tag = $label) =~ s/[^A-Za-z0-9_.-]+/_/g;
    my @defs = (golden_defines($g), @{ $o{defines} // [] });
    my %res = (golden => $g, ok => 0);

    my $w = $o{weights};
    if (!defined $w) {
        $w = "$dir/$tag." . ($fmt eq 'llama2c' ? 'bin' : 'safetensors');
        make_weights(spec => $o{spec}, format => $fmt, seed => $g->{seed}, defines => \@defs,
                     out => $w, label => $label) or return \%res;
    }
    $res{weights} = $w;
    my $prog = "$dir/$tag.prog";
    build_prog(spec => $o{spec}, weights => $w, out => $prog, defines => \@defs,
               flags => $o{build_flags}, label => $label) or return \%res;
    $res{prog} = $prog;

    # Teacher-forced logits.
    my $lf = "$dir/$tag.logits";
    my @tf = ($prog, '--tokens', join(',', @{ $g->{tokens} }), '--logits', $lf);
    push @tf, '--stats' if $o{stats};
    my $r = run_cmd(@tf);
    $res{stats_err} = $r->{err};
    $res{logits} = $lf;
    my $ran = $r->{rc} == 0 && !$r->{sig};
    ok($ran, "$label: teacher-forced run") or diag(how($r));
    my $all_ok = $ran;
    if ($ran) {
        my $rows = read_rows($lf) // [];
        my $n = @{ $g->{tokens} };
        is(scalar @$rows, $n, "$label: $n logits rows") or $all_ok = 0;
        my ($worst, $worst_pos, @fails) =
            compare_rows($rows, [ map { [$_, $g->{logits}{$_}] } @{ $g->{logit_positions} } ]);
        my $nrows = @{ $g->{logit_positions} };
        ok(!@fails, sprintf('%s: %d logits rows within %g of row max (worst ratio %.3g at position %s)',
                            $label, $nrows, $REL_TOL, $worst, $worst_pos))
            or do { diag($_) for @fails; $all_ok = 0 };
        # argmax at every teacher-forced position with a clear margin (covers the
        # positions whose full rows are not stored, e.g. dense-s15m).
        my @am;
        for my $p (0 .. $#{ $g->{argmax} }) {
            next if $g->{margins}[$p] < $MARGIN_MIN;
            my $got = $rows->[$p] or do { push @am, "position $p: no row"; next };
            my $a = argmax_of($got);
            push @am, "position $p: argmax $a, want $g->{argmax}[$p]" if $a != $g->{argmax}[$p];
        }
        ok(!@am, "$label: argmax at every teacher-forced position") or do { diag($_) for @am; $all_ok = 0 };
    }

    # Greedy decoding.
    my $ng = @{ $g->{greedy_tokens} };
    $r = run_cmd($prog, '--tokens', join(',', @{ $g->{greedy_prompt} }), '-n', $ng, '--temp', '0');
    $ran = $r->{rc} == 0 && !$r->{sig};
    ok($ran, "$label: greedy run") or diag(how($r));
    if ($ran) {
        my @got = split ' ', $r->{out};
        my $cut = $ng;
        for my $i (0 .. $ng - 1) {
            if ($g->{greedy_margins}[$i] < $MARGIN_MIN) { $cut = $i; last }
        }
        my @want = @{ $g->{greedy_tokens} }[0 .. $cut - 1];
        my @have = @got[0 .. ($cut < @got ? $cut : scalar @got) - 1];
        my $same = @got == $ng && !grep { !/^\d+$/ } @got;
        $same &&= "@have" eq "@want";
        ok($same, "$label: greedy tokens" . ($cut < $ng ? " (first $cut of $ng; step $cut has margin < $MARGIN_MIN)" : " ($ng)"))
            or do { diag("got:  $r->{out}"); diag("want: @{ $g->{greedy_tokens} }"); $all_ok = 0 };
    } else {
        $all_ok = 0;
    }

    # The same model built from its own IR dump gives the same logits, byte for byte.
    if ($o{from_ir} // 1) {
        my $ir = "$dir/$tag.ir";
        my $d = run_cmd($KILN, 'dump', $o{spec}, @defs, @{ $o{build_flags} // [] });
        my $dumped = $d->{rc} == 0 && open(my $fh, '>', $ir);
        if ($dumped) { print $fh $d->{out}; close $fh }
        ok($dumped, "$label: kiln dump to $tag.ir") or diag(how($d));
        my $irprog = "$dir/$tag.ir.prog";
        if ($dumped && build_prog(spec => $ir, weights => $w, out => $irprog,
                                  flags => $o{build_flags}, label => "$label from its IR dump")) {
            my $lf2 = "$dir/$tag.ir.logits";
            my $r2 = run_cmd($irprog, '--tokens', join(',', @{ $g->{tokens} }), '--logits', $lf2);
            my $same = $r2->{rc} == 0 && defined slurp($lf) && slurp($lf2) eq slurp($lf);
            ok($same, "$label: built from its IR dump, identical logits") or do { diag(how($r2)); $all_ok = 0 };
            unlink $irprog;
        } else {
            $all_ok = 0;
        }
    }
    $res{ok} = $all_ok;
    return \%res;
}

# ---------------------------------------------------------------- --stats

# parse_stats(STDERR) -> { 'active_fraction[2]' => { value => '0.414062', samples => 16 }, ... }
sub parse_stats {
    my ($err) = @_;
    my %s;
    for my $l (split /\n/, $err // '') {
        next unless $l =~ /^\s*stat\s+(\S+)\s+(\S+)(?:\s+\((\d+)\s+samples?\))?/;
        $s{$1} = { value => $2, samples => $3 };
    }
    return \%s;
}

# kv_report_layers(STDERR) -> { layer => { k => 0/1, v => 0/1, line => '...' } }
# Loose parser for the KV-cache report (format not fixed yet): a line naming a
# layer as `l=N` (or `layer N`) is about that layer; it counts as a K cache when
# it carries a 'k' / 'K' / 'k_cache' / 'key' label not set to 0/none/-, and
# likewise for V.
# blob_entries(PROG) -> ([dtype, nbytes, layout, rank], ...): the weight entries of the blob
# appended to a program (runtime/kiln_blob.h: a trailer at the end points at the header;
# 72-byte entries: name offset, offset, nbytes, dtype, rank, dims[4], layout), without the
# u8 entries that are not weights (the tokenizer, the checksums); () when it has none.
sub blob_entries {
    my ($prog) = @_;
    my $bin = slurp($prog) // return ();
    return () if length $bin < 24;
    my ($off, undef, $magic) = unpack('Q< Q< a8', substr($bin, -24));
    return () unless $magic eq 'KILNTAIL' && $off + 24 <= length $bin;
    my ($m, undef, $n, $table) = unpack('a8 V V Q<', substr($bin, $off, 24));
    return () unless $m eq 'KILNBLOB';
    my @e;
    for my $k (0 .. $n - 1) {
        my (undef, undef, $nbytes, $dtype, $rank, undef, undef, undef, undef, $layout) =
            unpack('Q< Q< Q< V V Q< Q< Q< Q< V', substr($bin, $off + $table + 72 * $k, 72));
        push @e, [$dtype, $nbytes, $layout, $rank] unless $dtype == 16;
    }
    return @e;
}

# blob_tensors(PROG) -> (tensor count, bytes of tensor data), (-1, -1) without a blob.
sub blob_tensors {
    my @e = blob_entries($_[0]) or return (-1, -1);
    my $sum = 0;
    $sum += $_->[1] for @e;
    return (scalar @e, $sum);
}

sub kv_report_layers {
    my ($err) = @_;
    my %layers;
    for my $l (split /\n/, $err // '') {
        next if $l =~ /^\s*stat\s/;
        next unless $l =~ /\bl(?:ayer)?\s*[=:]?\s*(\d+)\b/i;
        my $n = $1;
        my $e = $layers{$n} //= { k => 0, v => 0, line => '' };
        $e->{line} .= "$l\n";
        for my $kind ([k => qr/(?:k|key|keys)/i], [v => qr/(?:v|value|values)/i]) {
            my ($slot, $re) = @$kind;
            while ($l =~ /\b$re(?:[-_ ]?cache)?\b(\s*[=:]\s*(\S+))?/g) {
                my $val = $2;
                next if defined $val && $val =~ /^(?:0+(?:\.0*)?\D*|none|no|-|n\/a)$/i;
                $e->{$slot} = 1;
            }
        }
    }
    return \%layers;
}

1;
