# The O&M reports in a real browser: every kind rendered by headless
# Chromium (Debian's chromium) from vms.report_html over the pinned history
# of sql/fixtures/report_history.sql.  For each kind: the page loads with no
# console message and no request (nothing fetched), the browser's DOM has
# every chart with drawn data (polylines or dots), and each figure the page
# shows equals what vms.report_figures returns, formatted.  The monthly
# report printed to PDF by Chromium holds its Chinese text (pdftotext), and
# a CJK font is installed (fc-list), without which every label would be an
# empty box.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $root = $ENV{VMS_ROOT} or die "VMS_ROOT not set";
my $chromium = '/usr/bin/chromium';
-x $chromium or BAIL_OUT('chromium is not installed (bash test/scripts/deps.sh)');
my $tmp = PostgreSQL::Test::Utils::tempdir;

# the CJK font
my $fonts = `fc-list :lang=zh family`;
like($fonts, qr/Noto Sans CJK/, 'a CJK font (Noto Sans CJK) is installed');

my $node = PostgreSQL::Test::Cluster->new('reports');
$node->init;
$node->start;
$node->safe_psql('postgres', 'SET client_min_messages = warning; CREATE EXTENSION vms CASCADE');
for my $f (qw(futian nanyuan report_history)) {
    $node->safe_psql('postgres', "SET search_path = public, vms; SET client_min_messages = warning;\n"
                     . slurp_file("$root/sql/fixtures/$f.sql"));
}

# Chromium as root: no sandbox; a fresh profile per run; nothing in the
# background that would fetch (the page itself must fetch nothing).
sub chromium {
    my ($name, @args) = @_;
    my $profile = "$tmp/profile-$name";
    mkdir $profile;
    my ($out, $err) = ('', '');
    my @cmd = ($chromium, '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
               '--disable-background-networking', '--disable-component-update', '--disable-sync',
               '--disable-extensions', '--disable-default-apps', "--user-data-dir=$profile",
               '--enable-logging=stderr', '--v=0', @args);
    # a guard against a hung browser, not a timing check
    IPC::Run::run(\@cmd, '<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(300));
    return ($out, $err);
}

# The annual report of 2026 is an open period until 2027 (its current day
# computed live, so its figures move with the clock), closed after: the page
# and the figures it is checked against come from one transaction, one
# "now", on whatever date and at whatever hour this runs.
my %kinds = (daily => '2026-03-03', weekly => '2026-03-02', monthly => '2026-03-01',
             quarterly => '2026-01-01', annual => '2026-01-01');
for my $kind (sort keys %kinds) {
    my $start = $kinds{$kind};
    my $both = $node->safe_psql('postgres', qq{BEGIN;
        CREATE TEMP TABLE shown AS SELECT vms.report_html('$kind', '$start') AS html;
        SELECT html || E'\n\@\@figures\@\@\n'
               || (SELECT string_agg(figure || '=' || vms._report_fmt(value, unit), E'\n' ORDER BY figure)
                     FROM vms.report_figures('$kind', '$start'))
          FROM shown;
        COMMIT;});
    my ($html, $want) = split /\n\@\@figures\@\@\n/, $both, 2;
    like($want // '', qr/^online_ratio=/m, "$kind: the page and its figures from one snapshot");
    open(my $fh, '>:raw', "$tmp/report-$kind.html") or die $!;
    print $fh $html, "\n";
    close $fh;
    my ($dom, $log) = chromium($kind, '--dump-dom', "file://$tmp/report-$kind.html");
    like($dom, qr/<h1>视频监控运维/, "$kind: Chromium rendered the report");
    my @console = grep { /CONSOLE|Failed to load|net::ERR_|Uncaught/ } split /\n/, $log;
    is(scalar(@console), 0, "$kind: no console message, nothing failed to load") or diag(join("\n", @console));
    # every chart in the browser's DOM has data drawn
    my @charts = $dom =~ /(<svg[^>]*data-chart="[^"]+".*?<\/svg>)/gs;
    cmp_ok(scalar(@charts), '>=', 11, "$kind: the daily charts and the map are there");
    for my $svg (@charts) {
        my ($id) = $svg =~ /data-chart="([^"]+)"/;
        my $marks = () = $svg =~ /<(?:polyline|circle)\b/g;
        ok($marks > 0 && $svg !~ /本期无数据/, "$kind: chart $id has data ($marks marks)");
    }
    # each figure shown equals vms.report_figures, formatted
    my %shown = $dom =~ /data-figure="([a-z_0-9]+)" data-value="[^"]*">([^<]*)</g;
    my %want = map { split /=/, $_, 2 } split /\n/, $want;
    is(scalar(keys %shown), 25, "$kind: 25 headline figures shown");
    is_deeply(\%shown, \%want, "$kind: the figures shown are what vms.report_figures returns");
}

# printed on A4 by Chromium: the PDF holds the Chinese text
my ($out, $log) = chromium('pdf', '--no-pdf-header-footer', "--print-to-pdf=$tmp/report-monthly.pdf",
                           "file://$tmp/report-monthly.html");
ok(-s "$tmp/report-monthly.pdf", 'Chromium printed the monthly report to PDF');
my $text = `pdftotext -enc UTF-8 $tmp/report-monthly.pdf -`;
utf8::decode($text);
my $want_text = '视频监控运维月报';
utf8::decode($want_text);
like($text, qr/\Q$want_text\E/, 'the PDF holds the Chinese title');
for my $label (qw(在线率 取流成功率 出图率 离线时长 按管理单位 超期告警 点位治理 填报率)) {
    my $l = $label;
    utf8::decode($l);
    like($text, qr/\Q$l\E/, "the PDF holds $label");
}
my $info = `pdfinfo $tmp/report-monthly.pdf`;
like($info, qr/Page size:\s+59[45]\.\d+ x 841\.\d+ pts \(A4\)/, 'printed on A4');
# the font the report's style names first is the one fontconfig gives for Chinese
like(`fc-match 'Noto Sans CJK SC'`, qr/NotoSansCJK/, 'the report\'s first font family resolves to the installed CJK font');
like(`fc-match 'sans-serif:lang=zh-cn'`, qr/CJK/, 'and so does the sans-serif fallback for Chinese');

$node->stop;
done_testing();
