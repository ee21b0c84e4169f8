#!/usr/bin/perl
# `kiln bench` and the program's --bench-pp/--bench-tg on a tiny model (examples/llama.kiln's
# defaults, det-weights): the kiln-bench line, the JSON report (every record and field, one
# record per weight type, thread count and test, the derived figures by their formulas), the
# markdown tables, usage errors, a failing build reported while the others are measured, and
# the temporary folder removed. A benchmark reports; this test asserts nothing about speed,
# only that every figure due is a positive finite number.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP ();
use Golden qw(run_cmd);
no warnings 'qw';    # lists such as qw(-t 1,2) hold commas on purpose

my $kiln = Golden::kiln();
my $dir  = Golden::tmpdir();
my $w    = "$dir/w.safetensors";
my $r = run_cmd($kiln, 'weights', 'examples/llama.kiln', '--seed', 1, '-o', $w);
ok($r->{rc} == 0, 'kiln weights') or diag(Golden::how($r));

sub positive { my ($x) = @_; return defined $x && !ref $x && $x =~ /^[-+0-9.eE]+$/ && $x > 0 && $x < 9**9**9 }

# ---- the program's side
my $prog = "$dir/llama";
$r = run_cmd($kiln, 'build', 'examples/llama.kiln', '--weights', $w, '-o', $prog);
ok($r->{rc} == 0, 'kiln build') or diag(Golden::how($r));
my $line_re = join ' ', 'kiln-bench pp=(\d+) pp_s=([\d.]+) tg=(\d+) tg_s=([\d.]+) threads=(\d+)',
                        'batch=(\d+) path=(avx512|avx2|portable) decode_bytes=(\d+)',
                        'decode_bytes_experts=(\d+) macs_all=(\d+) macs_logits=(\d+)';
$line_re = qr/^$line_re\n\z/;
$r = run_cmd($prog, '--bench-pp', 8, '--bench-tg', 4);
my @f = $r->{out} =~ $line_re;
ok($r->{rc} == 0 && @f && $f[0] == 8 && $f[1] > 0 && $f[2] == 4 && $f[3] > 0 && $f[4] >= 1
   && $f[5] == 64 && $f[7] > 0 && $f[8] == 0 && $f[9] > 0 && $f[10] > 0 && $r->{err} eq '',
   'PROG --bench-pp 8 --bench-tg 4: one well-formed kiln-bench line, exit 0')
    or diag(Golden::how($r) . "  stdout: $r->{out}");
$r = run_cmd($prog, '--bench-pp', 8, '--bench-tg', 4, '--threads', 2, '--batch', 3);
@f = $r->{out} =~ $line_re;
ok($r->{rc} == 0 && @f && $f[4] == 2 && $f[5] == 3, '--threads and --batch apply')
    or diag(Golden::how($r) . "  stdout: $r->{out}");
$r = run_cmd($prog, '--bench-tg', 4);
@f = $r->{out} =~ $line_re;
ok($r->{rc} == 0 && @f && $f[0] == 0 && $f[1] == 0 && $f[3] > 0,
   '--bench-tg alone: no prompt test, no --tokens needed') or diag(Golden::how($r));
$r = run_cmd($prog, '--bench-pp', 129);
ok($r->{rc} == 2 && $r->{err} =~ /--bench-pp: 129 is out of range \[0, 128\]/,
   '--bench-pp past the context: usage error') or diag(Golden::how($r));
$r = run_cmd($prog, '--bench-pp', 8, '--tokens', '1,2');
ok($r->{rc} == 2 && $r->{err} =~ /do not mix with --tokens/, '--bench-pp with --tokens: usage error')
    or diag(Golden::how($r));
$r = run_cmd($prog, '--help');
ok($r->{rc} == 0 && $r->{out} =~ /--bench-pp P, --bench-tg N/, "the program's --help tells of --bench-pp");

# ---- kiln bench, JSON
my $tmp = "$dir/tmp";
mkdir $tmp or die "$tmp: $!";
local $ENV{TMPDIR} = $tmp;
my @base = ('bench', 'examples/llama.kiln', '--weights', $w, '--probe-mib', 16);
$r = run_cmd($kiln, @base, qw(-p 8 -n 4 -r 2 -t 1,2 --wtype f32,f16 -o json));
ok($r->{rc} == 0, 'kiln bench -o json: exit 0') or diag(Golden::how($r));
like($r->{err}, qr/^bench: building f32 \.\.\.\nbench: built f32 in [\d.]+ s$/m, 'build progress on stderr');
my $json = eval { JSON::PP::decode_json($r->{out}) };
ok(ref $json eq 'ARRAY', 'the report is a JSON array') or diag("$@\n$r->{out}");
$json = [] unless ref $json eq 'ARRAY';
opendir my $dh, $tmp or die;
my @left = grep { !/^\.\.?$/ } readdir $dh;
closedir $dh;
is_deeply(\@left, [], 'the temporary build folder is removed');

my %by;
push @{ $by{$_->{test}} }, $_ for @$json;
my ($cpu) = @{ $by{cpu} // [{}] };
ok(defined $cpu->{brand} && ($cpu->{path} // '') =~ /^(avx2|portable)$/
   && ($cpu->{read_isa} // '') =~ /^(avx512|avx2|portable)$/
   && ($cpu->{fma_isa} // '') =~ /^(avx512|avx2\+fma|sse|portable)$/ && $cpu->{rounds} == 2
   && positive($cpu->{probe_bytes}), 'the cpu record: brand, path, the probes\' instructions')
    or diag(JSON::PP->new->canonical->encode($cpu));

my %machine;
for my $test (qw(read_4k read_huge fma_peak)) {
    my $unit = $test eq 'fma_peak' ? 'gflop_s' : 'gb_s';
    my @recs = @{ $by{$test} // [] };
    is(join(',', sort map { $_->{threads} } @recs), '1,2', "$test: one record per thread count");
    for my $rec (@recs) {
        my ($lo, $med, $hi) = map { $rec->{"${unit}_$_"} } qw(min median max);
        ok(positive($lo) && positive($med) && positive($hi) && $lo <= $med && $med <= $hi,
           "$test at $rec->{threads} threads: min <= median <= max, all positive")
            or diag(JSON::PP->new->canonical->encode($rec));
        $machine{$test}{$rec->{threads}} = $med;
    }
}
for my $rec (@{ $by{read_huge} // [] }) {
    ok(!defined $rec->{huge_page_pct} || ($rec->{huge_page_pct} >= 0 && $rec->{huge_page_pct} <= 100),
       "read_huge at $rec->{threads} threads: huge_page_pct a share or null");
}
my %built = map { $_->{wtype} => $_ } @{ $by{build} // [] };
ok($built{$_} && $built{$_}{ok} && !defined $built{$_}{error} && $built{$_}{seconds} >= 0,
   "build record of $_") for qw(f32 f16);

my @tests = grep { $_->{test} =~ /^(pp|tg)\d+$/ } @$json;
my %seen;
$seen{"$_->{wtype} $_->{threads} $_->{test}"}++ for @tests;
is(join(' ', map { "$_=$seen{$_}" } sort keys %seen),
   join(' ', map { my $wt = $_; map { ("$wt $_ pp8=1", "$wt $_ tg4=1") } 1, 2 } qw(f16 f32)),
   'one test record per (wtype, threads, test)');
my @fields = qw(test spec defines wtype threads tokens rounds batch path tok_s_min tok_s_median
                tok_s_max gb_s pct_bandwidth gflop_s pct_fma_peak decode_bytes
                decode_bytes_experts macs_all macs_logits);
my %decode_bytes;
for my $t (@tests) {
    my $name = "$t->{wtype}, $t->{threads} threads, $t->{test}";
    my @missing = grep { !exists $t->{$_} } @fields;
    is("@missing", '', "$name: every field") or next;
    my $pp = $t->{test} =~ /^pp/;
    ok(positive($t->{tok_s_min}) && $t->{tok_s_min} <= $t->{tok_s_median}
       && $t->{tok_s_median} <= $t->{tok_s_max} && $t->{rounds} == 2 && $t->{tokens} == ($pp ? 8 : 4)
       && $t->{batch} == 64 && positive($t->{decode_bytes}) && $t->{decode_bytes_experts} == 0
       && positive($t->{macs_all}) && positive($t->{macs_logits}),
       "$name: tok/s min <= median <= max, positive; the model's counts")
        or diag(JSON::PP->new->canonical->encode($t));
    my $close = sub { my ($x, $y) = @_; defined $x && defined $y && abs($x - $y) <= 1e-6 * abs($y) };
    if ($pp) {
        my $pp_s = 8 / $t->{tok_s_median};
        my $gflop = 2 * ($t->{macs_all} * 8 + $t->{macs_logits} * 1) / $pp_s / 1e9;
        ok(!defined $t->{gb_s} && !defined $t->{pct_bandwidth} && positive($t->{gflop_s})
           && $close->($t->{gflop_s}, $gflop)
           && $close->($t->{pct_fma_peak}, $gflop / $machine{fma_peak}{$t->{threads}} * 100),
           "$name: GFLOP/s and % of FMA peak by their formulas, no GB/s")
            or diag(JSON::PP->new->canonical->encode($t));
    } else {
        my $gb = $t->{decode_bytes} * $t->{tok_s_median} / 1e9;
        ok(!defined $t->{gflop_s} && !defined $t->{pct_fma_peak} && positive($t->{gb_s})
           && $close->($t->{gb_s}, $gb)
           && $close->($t->{pct_bandwidth}, $gb / $machine{read_4k}{$t->{threads}} * 100),
           "$name: GB/s and % of bandwidth by their formulas, no GFLOP/s")
            or diag(JSON::PP->new->canonical->encode($t));
    }
    $decode_bytes{$t->{wtype}} = $t->{decode_bytes};
}
ok(($decode_bytes{f16} // 0) > 0 && ($decode_bytes{f16} // 0) < ($decode_bytes{f32} // 0),
   'f16 weights read fewer bytes per token than f32');

# ---- markdown, --json FILE, and the portable probes
{
    local $ENV{KILN_CPU} = 'portable';
    $r = run_cmd($kiln, @base, qw(-p 4 -n 2 -r 1 -t 1 --wtype f32 --json), "$dir/report.json");
}
ok($r->{rc} == 0, 'kiln bench -o md (the default) with --json FILE') or diag(Golden::how($r));
like($r->{out}, qr/^\| threads \| read, 4 KiB pages GB\/s \| read, huge pages GB\/s \| huge pages used \| FMA peak GFLOP\/s \|$/m,
     'md: the machine table');
like($r->{out}, qr/^\| model \| weights\/token \| wtype \| threads \| test \| tok\/s \| GB\/s \| % bw \| GFLOP\/s \| % FMA \|$/m,
     'md: the results table');
like($r->{out}, qr/^\| llama\.kiln \| [\d.]+ MiB \| f32 \| 1 \| pp4 \| [\d.]+ \[[\d.]+-[\d.]+\] \|  \|  \| [\d.]+ \| [\d.]+ \|$/m,
     'md: the pp row');
like($r->{out}, qr/^\| llama\.kiln \| [\d.]+ MiB \| f32 \| 1 \| tg2 \| [\d.]+ \[[\d.]+-[\d.]+\] \| [\d.]+ \| [\d.]+ \|  \|  \|$/m,
     'md: the tg row');
my $file = eval { JSON::PP::decode_json(Golden::slurp("$dir/report.json") // '') };
my ($pcpu) = grep { $_->{test} eq 'cpu' } @{ $file // [] };
ok($pcpu && $pcpu->{path} eq 'portable' && $pcpu->{read_isa} eq 'portable'
   && $pcpu->{fma_isa} =~ /^(sse|portable)$/ && (grep { $_->{test} eq 'tg2' } @$file),
   '--json FILE holds the report; KILN_CPU=portable puts the probes on portable code')
    or diag($@ // '');

# ---- a build that fails is reported, the others measured
my $keep = "$dir/keep";
mkdir $keep or die;
mkdir "$keep/prog-f16" or die;   # kiln build -o onto a folder fails
$r = run_cmd($kiln, @base, qw(-p 4 -n 2 -r 1 -t 1 --wtype f16,f32 -o json --keep), $keep);
ok($r->{rc} == 1 && $r->{err} =~ /bench: the f16 build failed \(exit 1\); f16 is skipped:\n.*folder/,
   'a failing build: reported with its message, exit 1') or diag(Golden::how($r));
$json = eval { JSON::PP::decode_json($r->{out}) } // [];
my ($f16) = grep { $_->{test} eq 'build' && $_->{wtype} eq 'f16' } @$json;
ok($f16 && !$f16->{ok} && $f16->{error} =~ /folder/, 'its build record says why');
is(join(',', map { "$_->{wtype} $_->{test}" } grep { $_->{test} =~ /^(pp|tg)/ } @$json),
   'f32 pp4,f32 tg2', 'the other weight type is still measured');
ok(-x "$keep/prog-f32" && -s "$keep/build-f16.log", '--keep keeps the programs and build logs');

# ---- usage errors
my @good = ('bench', 'examples/llama.kiln', '--weights', $w);
for my $case ([[qw(--wtype f32,q9_9)], qr/--wtype: unknown weight type 'q9_9'/],
              [[qw(--wtype f32,f32)], qr/--wtype: 'f32' is listed twice/],
              [[qw(-t 0)], qr/-t needs an integer in 1\.\.4096, not '0'/],
              [[qw(-t 1,,2)], qr/-t: '1,,2' is not a list/],
              [[qw(-r 0)], qr/-r needs an integer in 1\.\.100000, not '0'/],
              [[qw(-o xml)], qr/-o must be md or json, not 'xml'/],
              [[qw(-p -1)], qr/-p needs an integer/],
              [[qw(-p 0 -n 0)], qr/leave nothing to measure/],
              [[qw(--probe-mib 0)], qr/--probe-mib needs an integer/],
              [[qw(--frobnicate)], qr/unknown option '--frobnicate'/],
              [[qw(-t)], qr/-t needs a value/]) {
    my ($args, $re) = @$case;
    $r = run_cmd($kiln, @good, @$args);
    ok($r->{rc} == 2 && $r->{err} =~ $re && $r->{err} =~ /try 'kiln bench --help'/ && $r->{out} eq '',
       "kiln bench @$args: usage error") or diag(Golden::how($r));
}
$r = run_cmd($kiln, 'bench', 'examples/llama.kiln');
ok($r->{rc} == 2 && $r->{err} =~ /bench needs --weights FILE/, 'missing --weights: usage error')
    or diag(Golden::how($r));
$r = run_cmd($kiln, 'bench', '--weights', $w);
ok($r->{rc} == 2 && $r->{err} =~ /bench needs a spec file/, 'missing spec: usage error')
    or diag(Golden::how($r));
$r = run_cmd($kiln, 'bench', '--help');
ok($r->{rc} == 0 && $r->{out} =~ /^SYNOPSIS$/m && $r->{out} =~ /pct_fma_peak/
   && $r->{out} =~ /GB\/s = decode_bytes \* median tok\/s \/ 1e9/, 'kiln bench --help: the formulas');
$r = run_cmd($kiln, '--help');
like($r->{out}, qr/bench SPEC --weights FILE/, 'kiln --help names bench');

done_testing();
