# CANCEL of a relayed INVITE (RFC 3261 9.1, 9.2): vms as a lower platform
# relays an upper platform's INVITE to the device that owns the channel
# (README "INVITE relay").  The upper platform and the device are played
# here over UDP sockets, byte by byte, so that what vms sends can be read
# header by header; the device registers first with sipp (its digest).
#
#  - the upper platform CANCELs while the device has not answered: 200 to the
#    CANCEL, 487 to the INVITE; the device gets a CANCEL with its INVITE's
#    Request-URI, Call-ID, From, CSeq number and top Via branch, and its 487 is
#    ACKed (same branch); a CANCEL with another branch or an unknown Call-ID: 481,
#    without a branch or with an overlong one: 400;
#    a CANCEL after the final answer: 200, nothing changes;
#  - the device's 200 crossing the CANCEL: ACKed and ended with a BYE,
#    never relayed up;
#  - a BYE of the upper platform before the device answered: 200, 487 to the
#    INVITE, the device's INVITE CANCELled;
#  - no final answer in 16 s: 408 up, the device's INVITE CANCELled;
#  - the upstream dropped while the device has not answered: CANCELled,
#    a late 200 ACKed and BYEd;
#  - each end audited (sip_upstream_bye, ended_by cancel / upstream / timeout / dropped);
#  - a device that has not answered 1xx yet gets no CANCEL until it does (9.1):
#    its INVITE is retransmitted meanwhile;
#  - the final answers that go up are retransmitted over UDP until the upper
#    platform's ACK (17.2.1 Timer G for the 487, 13.3.1.4 for a 200): at least
#    T1 then 2*T1 apart (kernel arrival times), and no more after the ACK;
#    a 200 never ACKed ends the call at 64*T1 (BYE to both, audited no ack; at
#    least 10 copies, the BYE 31.5 s after the first at least and less than T2
#    after the last); they go on while the worker's SQL fails every round, and
#    the worker does not spin; forged ACKs (another port, From tag or CSeq) stop
#    nothing, the ACK from the INVITE's address after the upstream moved does;
#    the 408 to a device that never answered is retransmitted too;
#  - a device's 486: a BYE before the ACK gets 481; after the ACK the INVITE
#    again gets the same 486 for Timer I (5 s), then the slot is free (new call);
#  - a device's 200 sent again after it crossed the CANCEL is ACKed again (13.2.2.4)
#    with the same ACK byte for byte, and no second BYE;
#  - a 255-character Via branch can be CANCELled, a 256-character one gets 400;
#  - disabling the upstream ends its calls as dropping it does: the established
#    one's device gets a BYE, the pending one's a CANCEL (audited, ended_by disabled);
#    the upper platform gets a BYE and a 487, then nothing more (no second BYE).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use IO::Socket::INET;
use IO::Select;
use POSIX ();
use Time::HiRes qw(time);
use VmsTest;

my $root = $ENV{VMS_ROOT} or die "VMS_ROOT not set";
plan skip_all => 'sipp not installed' unless system('command -v sipp >/dev/null 2>&1') == 0;

my $lower_id = '34020100002000000001';
my $realm = '3402010000';
my $sip_port = PostgreSQL::Test::Cluster::get_free_port();
my $node = vms_node('cancel', { secret_key => 1 }, 'vms.viid_enabled' => 'off', 'vms.sip_id' => $lower_id,
	'vms.sip_listen' => '127.0.0.1', 'vms.sip_port' => $sip_port, 'vms.sip_flush_interval' => 200,
	# the device (a socket here) sends one keepalive: it stays online however long a loaded machine takes
	'vms.sip_keepalive_interval' => 3600, 'log_min_messages' => 'log');
$node->poll_query_until('postgres', "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'vms sip'")
  or die 'sip worker did not start';

# ---------------------------------------------------------------- two SIP peers on UDP sockets
my $upper_id = '34010000002000000001';
my $up_port = PostgreSQL::Test::Cluster::get_free_port();
my $up = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $up_port, Proto => 'udp') or die "upper: $!";
stamp_arrivals($up);
my $vms = sockaddr_of('127.0.0.1', $sip_port);
my (%inbox, $dev);
my $registers_up = 0;	# REGISTERs that came to the upper platform's socket
$inbox{up} = [];
$inbox{dev} = [];

# the kernel's arrival time of each datagram (SIOCGSTAMP, Linux; the first call turns stamping on), not the
# time this script got round to reading it: a loaded machine delays the reader, not the stamps
my %arrived;	# message text => arrival times, in order (a retransmission is the same text)
use constant SIOCGSTAMP => 0x8906;

sub stamp_arrivals { my $ts = "\0" x 16; ioctl($_[0], SIOCGSTAMP, $ts); return }

# undef (and a failed check, once) when the kernel gives none: the timing checks then fail, they never
# fall back on the reader's clock
my $stamp_failed;

sub arrival_of
{
	my ($sock) = @_;
	my $ts = "\0" x 16;
	unless (ioctl($sock, SIOCGSTAMP, $ts))
	{
		fail("the kernel's arrival time of a datagram (SIOCGSTAMP): $!") unless $stamp_failed++;
		return undef;
	}
	my ($sec, $usec) = unpack('q q', $ts);
	return $sec + $usec / 1e6;
}

sub sockaddr_of { return Socket::pack_sockaddr_in($_[1], Socket::inet_aton($_[0])) }

sub hdr
{
	my ($m, $h) = @_;
	return $m =~ /^\Q$h\E[ \t]*:[ \t]*([^\r\n]*)/mi ? $1 : '';
}

sub branch_of { my ($m) = @_; return hdr($m, 'Via') =~ /;branch=([^;\s]+)/ ? $1 : '' }
sub tag_of { my ($v) = @_; return $v =~ /;tag=([^;\s>]+)/ ? $1 : '' }

# an answer to a request, as a UAS builds it: its Via, From, To (a tag added), Call-ID and CSeq
sub answer
{
	my ($sock, $req, $code, $reason, $to_tag, $body) = @_;
	my @via = $req =~ /^(Via[ \t]*:[^\r\n]*)/mig;
	my $to = hdr($req, 'To');
	$to .= ";tag=$to_tag" if $to_tag && $to !~ /;tag=/;
	my $msg = "SIP/2.0 $code $reason\r\n" . join('', map { "$_\r\n" } @via)
	  . 'From: ' . hdr($req, 'From') . "\r\nTo: $to\r\nCall-ID: " . hdr($req, 'Call-ID') . "\r\nCSeq: " . hdr($req, 'CSeq') . "\r\n";
	$body //= '';
	$msg .= "Contact: <sip:34020100001320000001\@127.0.0.1:" . $sock->sockport . ">\r\nContent-Type: APPLICATION/SDP\r\n" if $body ne '';
	$msg .= 'Content-Length: ' . length($body) . "\r\n\r\n$body";
	$sock->send($msg, 0, $vms) or die "send: $!";
}

# read what came to either peer; the upper platform's REGISTER, keepalives, NOTIFYs (and the device's
# MESSAGEs) are answered 200 here; everything else waits in the peer's inbox
sub pump
{
	my ($wait) = @_;
	my $sel = IO::Select->new(grep { defined } $up, $dev);
	for my $s ($sel->can_read($wait))
	{
		my $buf;
		$s->recv($buf, 65535) or next;
		push @{ $arrived{$buf} }, arrival_of($s);
		my $who = $s == $up ? 'up' : 'dev';
		if ($buf =~ /^(REGISTER|MESSAGE|NOTIFY|OPTIONS|SUBSCRIBE) /)
		{
			$registers_up++ if $who eq 'up' && $1 eq 'REGISTER';
			answer($s, $buf, 200, 'OK', 'x' . int(rand(1e9)));
			next;
		}
		push @{ $inbox{$who} }, $buf;
	}
}

# the first message in the peer's inbox that satisfies $pred (taken off), waiting for it (at most $secs,
# default the test timeout); undef at the deadline
sub wait_msg
{
	my ($who, $pred, $secs) = @_;
	my $deadline = time() + ($secs // $PostgreSQL::Test::Utils::timeout_default);
	while (1)
	{
		for my $i (0 .. $#{ $inbox{$who} })
		{
			local $_ = $inbox{$who}[$i];
			return splice(@{ $inbox{$who} }, $i, 1) if $pred->($_);
		}
		return undef if time() > $deadline;
		pump(0.2);
	}
}

sub is_response { my ($code, $method, $cid) = @_; return sub { /^SIP\/2\.0 $code / && hdr($_, 'CSeq') =~ /^\d+ $method$/ && hdr($_, 'Call-ID') eq $cid } }
sub is_request { my ($method, $cid) = @_; return sub { /^$method / && (!defined $cid || hdr($_, 'Call-ID') eq $cid) } }

# the upper platform's requests to vms
sub up_send
{
	my ($msg) = @_;
	$up->send($msg, 0, $vms) or die "send: $!";
}

# a round trip through the worker: an OPTIONS from the upper platform's socket, its answer (any status)
# comes after everything vms sent that socket before it handled the OPTIONS, which came after what
# the caller sent before
my $rt = 0;

sub up_roundtrip
{
	$rt++;
	up_send("OPTIONS sip:$lower_id\@127.0.0.1:$sip_port SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$up_port;branch=z9hG4bKrt$rt\r\n"
		  . "From: <sip:$upper_id\@3401000000>;tag=rt$rt\r\nTo: <sip:$lower_id\@$realm>\r\nCall-ID: rt-$rt\r\nCSeq: 1 OPTIONS\r\n"
		  . "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n");
	return wait_msg('up', is_response('\d+', 'OPTIONS', "rt-$rt"));
}

sub invite_text
{
	my ($method, $cid, $branch, $ch, $cseq, $to_tag) = @_;
	my $sdp = $method eq 'INVITE' ? "v=0\r\no=$upper_id 0 0 IN IP4 127.0.0.1\r\ns=Play\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
	  . "m=video 40000 RTP/AVP 96\r\na=recvonly\r\na=rtpmap:96 PS/90000\r\ny=0100000001\r\n" : '';
	return "$method sip:$ch\@127.0.0.1:$sip_port SIP/2.0\r\n"
	  . "Via: SIP/2.0/UDP 127.0.0.1:$up_port;rport;branch=$branch\r\n"
	  . "From: <sip:$upper_id\@3401000000>;tag=from$cid\r\n"
	  . "To: <sip:$ch\@$realm>" . ($to_tag ? ";tag=$to_tag" : '') . "\r\n"
	  . "Call-ID: $cid\r\nCSeq: " . ($cseq // 1) . " $method\r\nMax-Forwards: 70\r\n"
	  . ($method eq 'INVITE' ? "Contact: <sip:$upper_id\@127.0.0.1:$up_port>\r\nSubject: $ch:0,$upper_id:0\r\nContent-Type: APPLICATION/SDP\r\n" : '')
	  . 'Content-Length: ' . length($sdp) . "\r\n\r\n$sdp";
}

# ---------------------------------------------------------------- the upstream and the device
my $dev_code = '34020100001180000001';
my $ch = '34020100001320000001';

# the same from the device's socket (its OPTIONS is answered on the device's path)
sub dev_roundtrip
{
	$rt++;
	$dev->send("OPTIONS sip:$lower_id\@$realm SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:" . $dev->sockport . ";branch=z9hG4bKdrt$rt\r\n"
		  . "From: <sip:$dev_code\@$realm>;tag=drt$rt\r\nTo: <sip:$lower_id\@$realm>\r\nCall-ID: drt-$rt\r\nCSeq: 1 OPTIONS\r\n"
		  . "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n", 0, $vms) or die "send: $!";
	return wait_msg('dev', is_response('\d+', 'OPTIONS', "drt-$rt"));
}
$node->safe_psql('postgres', qq{
INSERT INTO vms.device (code, name) VALUES ('$dev_code', 'cancel NVR');
SELECT vms.device_set_password('$dev_code', '12345678', '$realm');
INSERT INTO vms.channel (code, device_code, name, civil_code, online) VALUES ('$ch', '$dev_code', 'cam', '340201', true);
SELECT vms.sip_add_upstream('city', '127.0.0.1', $up_port, '$upper_id', 'upper-pass', '{"keepalive_interval": 3600}');
SELECT vms.sip_share('city', '{"channels": ["$ch"]}');
});
my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
until ($node->safe_psql('postgres', "SELECT state FROM vms.sip_upstream_state WHERE upstream = 'city'") eq 'registered')
{
	die 'the upstream did not register' if time() > $deadline;
	pump(0.2);
}
pass('vms registers to the upper platform (played here)');

# the device registers with sipp (its digest), then this socket takes its address and port
my $dev_port = PostgreSQL::Test::Cluster::get_free_port();
my ($out, $err) = ('', '');
IPC::Run::run([ 'sipp', "127.0.0.1:$sip_port", '-sf', "$root/test/sipp/keepalive.xml", '-m', '1', '-s', $lower_id,
		'-key', 'domain', $realm, '-key', 'device', $dev_code, '-au', $dev_code, '-ap', '12345678',
		'-auth_uri', "$lower_id\@$realm", '-i', '127.0.0.1', '-p', $dev_port, '-t', 'u1', '-nd', '-nostdin',
		'-timeout', '60s', '-timeout_error' ], '>', \$out, '2>', \$err)
  or die "sipp device: $out $err";
$dev = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $dev_port, Proto => 'udp') or die "device: $!";
wait_ok($node, "SELECT online FROM vms.device WHERE code = '$dev_code'", 'the device (sipp) registers with its digest');

my $n = 0;
my %old_calls;	# the device's calls so far: a retransmission of one of their INVITEs is not a new call

sub new_invite { return sub { /^INVITE / && !$old_calls{ hdr($_, 'Call-ID') } } }

# the upper platform INVITEs; the device receives the relayed INVITE and answers 100
sub start_call
{
	my ($label, $branch) = @_;
	$n++;
	my $cid = "cancel-$n-" . int(rand(1e9));
	$branch //= "z9hG4bKup$n" . int(rand(1e9));
	up_send(invite_text('INVITE', $cid, $branch, $ch));
	ok(wait_msg('up', is_response(100, 'INVITE', $cid)), "$label: the upper platform's INVITE is answered 100");
	my $inv = wait_msg('dev', new_invite());
	ok($inv, "$label: the device receives the relayed INVITE") or BAIL_OUT('no INVITE at the device');
	$old_calls{ hdr($inv, 'Call-ID') } = 1;
	answer($dev, $inv, 100, 'Trying');
	return ($cid, $branch, $inv);
}

sub audited
{
	my ($by, $name) = @_;
	wait_ok($node, qq{SELECT count(*) = 1 FROM vms.audit_log WHERE action = 'sip_upstream_bye' AND object = 'city'
		AND detail ->> 'channel' = '$ch' AND detail ->> 'ended_by' = '$by'}, $name);
}

# the device's CANCEL is its INVITE's transaction: same Request-URI, Call-ID, From, CSeq number, top Via branch
sub check_cancel
{
	my ($label, $inv, $cancel) = @_;
	my ($iruri) = $inv =~ /^INVITE (\S+)/;
	my ($cruri) = $cancel =~ /^CANCEL (\S+)/;
	my ($icseq) = hdr($inv, 'CSeq') =~ /^(\d+)/;
	is(join('|', $cruri, hdr($cancel, 'Call-ID'), hdr($cancel, 'From'), hdr($cancel, 'CSeq'), branch_of($cancel), tag_of(hdr($cancel, 'To'))),
		join('|', $iruri, hdr($inv, 'Call-ID'), hdr($inv, 'From'), "$icseq CANCEL", branch_of($inv), ''),
		"$label: the device's CANCEL has its INVITE's Request-URI, Call-ID, From, CSeq number and top Via branch (To without tag)");
}

# ---------------------------------------------------------------- 1. the upper platform CANCELs
{
	my ($cid, $branch, $inv) = start_call('CANCEL');
	# another branch, or a Call-ID nobody INVITEd with: no such transaction
	up_send(invite_text('CANCEL', $cid, "${branch}x", $ch));
	ok(wait_msg('up', is_response(481, 'CANCEL', $cid)), 'a CANCEL with another top Via branch: 481');
	up_send(invite_text('CANCEL', "nobody-$cid", $branch, $ch));
	ok(wait_msg('up', is_response(481, 'CANCEL', "nobody-$cid")), 'a CANCEL for a Call-ID never INVITEd: 481');
	# malformed: no branch in the top Via, or one longer than any INVITE's vms keeps: 400, the worker runs on
	(my $nobranch = invite_text('CANCEL', $cid, $branch, $ch)) =~ s/;branch=\S+//;
	up_send($nobranch);
	ok(wait_msg('up', is_response(400, 'CANCEL', $cid)), 'a CANCEL without a Via branch: 400');
	up_send(invite_text('CANCEL', $cid, 'z9hG4bK' . ('b' x 300), $ch));
	ok(wait_msg('up', is_response(400, 'CANCEL', $cid)), 'a CANCEL with a 307-character branch: 400');

	up_send(invite_text('CANCEL', $cid, $branch, $ch));
	ok(wait_msg('up', is_response(200, 'CANCEL', $cid)), 'the CANCEL of the pending INVITE: 200');
	my $t487 = wait_msg('up', is_response(487, 'INVITE', $cid));
	ok($t487, 'the upper platform\'s INVITE: 487 Request Terminated');
	my $cancel = wait_msg('dev', is_request('CANCEL', hdr($inv, 'Call-ID')));
	ok($cancel, 'the device receives a CANCEL') or BAIL_OUT('no CANCEL at the device');
	check_cancel('upper CANCEL', $inv, $cancel);
	answer($dev, $cancel, 200, 'OK', 'devtag1');
	answer($dev, $inv, 487, 'Request Terminated', 'devtag1');
	my $ack = wait_msg('dev', is_request('ACK', hdr($inv, 'Call-ID')));
	ok($ack, 'the device\'s 487 is ACKed');
	is(join('|', hdr($ack, 'CSeq'), branch_of($ack), tag_of(hdr($ack, 'To'))), join('|', '1 ACK', branch_of($inv), 'devtag1'),
		'the ACK of the 487: CSeq 1 ACK, the INVITE\'s branch, the 487\'s To tag');
	# the ACK; once handled (a round trip: no copy of the 487 comes after it) the INVITE again and a CANCEL,
	# within Timer I (5 s after the ACK, when the relay is freed)
	up_send(invite_text('ACK', $cid, $branch, $ch, 1, tag_of(hdr($t487, 'To'))));
	ok(up_roundtrip(), 'the ACK of the 487 was handled (a round trip)');
	@{ $inbox{up} } = grep { !is_response(487, 'INVITE', $cid)->() } @{ $inbox{up} };
	# after the final answer the INVITE again: 487 again; a CANCEL changes nothing: 200 (RFC 3261 9.2), nothing to the device
	up_send(invite_text('INVITE', $cid, $branch, $ch));
	up_send(invite_text('CANCEL', $cid, $branch, $ch));
	ok(wait_msg('up', is_response(487, 'INVITE', $cid)), 'a retransmitted INVITE gets the same 487, not a new call (100)');
	ok(wait_msg('up', is_response(200, 'CANCEL', $cid)), 'a CANCEL after the final answer: 200');
	audited('cancel', 'the cancelled call is audited: sip_upstream_bye, ended_by cancel');
}

# ---------------------------------------------------------------- 1b. sipp as the upper platform
# (a peer we did not write: its CANCEL's branch is sipp's [branch-2], and it takes our 200 and 487 as they are)
{
	close $up;
	undef $up;
	my ($sout, $serr) = ('', '');
	my $sipp = IPC::Run::start([ 'sipp', "127.0.0.1:$sip_port", '-sf', "$root/test/sipp/upper_cancel.xml", '-m', '1',
			'-key', 'upper', $upper_id, '-key', 'channel', $ch, '-key', 'vms', "127.0.0.1:$sip_port",
			'-i', '127.0.0.1', '-p', $up_port, '-t', 'u1', '-nd', '-nostdin', '-timeout', '60s', '-timeout_error' ],
		'>', \$sout, '2>', \$serr);
	# meanwhile the device answers the relayed INVITE 100, a CANCEL 200 and then the INVITE 487
	my (%inv, $done);
	while ($sipp->pumpable)
	{
		pump(0.1);
		$sipp->pump_nb;
		for my $m (@{ $inbox{dev} })
		{
			next if $m eq '';
			if ($m =~ /^INVITE / && !$old_calls{ hdr($m, 'Call-ID') })
			{
				answer($dev, $m, 100, 'Trying') unless $inv{ hdr($m, 'Call-ID') };
				$inv{ hdr($m, 'Call-ID') } //= $m;
				$old_calls{ hdr($m, 'Call-ID') } = 1;
				$m = '';
			}
			elsif ($m =~ /^CANCEL / && $inv{ hdr($m, 'Call-ID') })
			{
				answer($dev, $m, 200, 'OK', 'devtags');
				answer($dev, $inv{ hdr($m, 'Call-ID') }, 487, 'Request Terminated', 'devtags');
				$done = $m;
				$m = '';
			}
		}
		@{ $inbox{dev} } = grep { $_ ne '' } @{ $inbox{dev} };
	}
	ok($sipp->finish, 'sipp (upper platform): INVITE, 100, CANCEL with the INVITE\'s branch, 200 to it, 487 to the INVITE, ACK')
	  or diag("$sout $serr");
	$up = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $up_port, Proto => 'udp') or die "upper: $!";
	stamp_arrivals($up);
	# the CANCEL may come before the device was INVITEd (then the device gets nothing); when it was, it is CANCELled
	if (%inv)
	{
		my ($cid) = keys %inv;
		$done //= wait_msg('dev', is_request('CANCEL', $cid));
		ok($done, 'sipp: the device\'s INVITE is CANCELled');
		check_cancel('sipp', $inv{$cid}, $done);
		ok(wait_msg('dev', is_request('ACK', $cid)), 'sipp: the device\'s 487 is ACKed');
	}
	else
	{
		note('sipp: the CANCEL came before the device was INVITEd: nothing reached it');
	}
	wait_ok($node, qq{SELECT count(*) = 2 FROM vms.audit_log WHERE action = 'sip_upstream_bye' AND detail ->> 'ended_by' = 'cancel'},
		'sipp: the call is audited as cancelled');
}

# ---------------------------------------------------------------- 2. the device's 200 crosses the CANCEL
{
	my ($cid, $branch, $inv) = start_call('race');
	up_send(invite_text('CANCEL', $cid, $branch, $ch));
	ok(wait_msg('up', is_response(200, 'CANCEL', $cid)), 'race: 200 to the CANCEL');
	ok(wait_msg('up', is_response(487, 'INVITE', $cid)), 'race: 487 to the INVITE');
	my $cancel = wait_msg('dev', is_request('CANCEL', hdr($inv, 'Call-ID')));
	ok($cancel, 'race: the device receives the CANCEL');
	# the device had answered 200 already: its 200 to the INVITE, 481 to the CANCEL
	answer($dev, $inv, 200, 'OK', 'devtag2',
		"v=0\r\no=$ch 0 0 IN IP4 127.0.0.1\r\ns=Play\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video 30000 RTP/AVP 96\r\na=sendonly\r\ny=0100000001\r\n");
	answer($dev, $cancel, 481, 'Call/Transaction Does Not Exist', 'devtag2');
	my $ack = wait_msg('dev', is_request('ACK', hdr($inv, 'Call-ID')));
	ok($ack && hdr($ack, 'CSeq') eq '1 ACK' && tag_of(hdr($ack, 'To')) eq 'devtag2', 'race: the device\'s 200 is ACKed (in its dialog)');
	my $bye = wait_msg('dev', is_request('BYE', hdr($inv, 'Call-ID')));
	ok($bye && tag_of(hdr($bye, 'To')) eq 'devtag2' && hdr($bye, 'CSeq') =~ /^\d+ BYE$/, 'race: and ended with a BYE');
	answer($dev, $bye, 200, 'OK') if $bye;
	# an OPTIONS answered after it: whatever vms sent up on the device's 200 came before
	up_send("OPTIONS sip:$lower_id\@127.0.0.1:$sip_port SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$up_port;branch=z9hG4bKopt$n\r\n"
		  . "From: <sip:$upper_id\@3401000000>;tag=o$n\r\nTo: <sip:$lower_id\@$realm>\r\nCall-ID: opt-$cid\r\nCSeq: 1 OPTIONS\r\n"
		  . "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n");
	ok(wait_msg('up', is_response(200, 'OPTIONS', "opt-$cid")), 'race: an OPTIONS after it is answered');
	is(scalar(grep { hdr($_, 'Call-ID') eq $cid } @{ $inbox{up} }), 0, 'race: the device\'s 200 never went up');
	wait_ok($node, qq{SELECT count(*) = 3 FROM vms.audit_log WHERE action = 'sip_upstream_bye' AND detail ->> 'ended_by' = 'cancel'},
		'race: the call is audited as cancelled');
}

# ---------------------------------------------------------------- 2b. a BYE of the upper platform before the device answered
{
	my ($cid, $branch, $inv) = start_call('early BYE');
	my $bye = invite_text('BYE', $cid, "${branch}bye", $ch, 2);
	up_send($bye);
	ok(wait_msg('up', is_response(200, 'BYE', $cid)), 'early BYE: 200 to the BYE');
	ok(wait_msg('up', is_response(487, 'INVITE', $cid)), 'early BYE: 487 to the INVITE');
	my $cancel = wait_msg('dev', is_request('CANCEL', hdr($inv, 'Call-ID')));
	ok($cancel, 'early BYE: the device\'s INVITE is CANCELled') or BAIL_OUT('no CANCEL');
	check_cancel('early BYE', $inv, $cancel);
	answer($dev, $cancel, 200, 'OK', 'devtagb');
	answer($dev, $inv, 487, 'Request Terminated', 'devtagb');
	ok(wait_msg('dev', is_request('ACK', hdr($inv, 'Call-ID'))), 'early BYE: the device\'s 487 is ACKed');
	audited('upstream', 'early BYE: audited, ended_by upstream');
}

# ---------------------------------------------------------------- 3. no final answer in 16 s
{
	my ($cid, $branch, $inv) = start_call('timeout');
	my $t408 = wait_msg('up', is_response(408, 'INVITE', $cid));
	ok($t408, 'timeout: the device never answers: 408 to the upper platform');
	my $cancel = wait_msg('dev', is_request('CANCEL', hdr($inv, 'Call-ID')));
	ok($cancel, 'timeout: the device\'s INVITE is CANCELled') or BAIL_OUT('no CANCEL');
	check_cancel('timeout', $inv, $cancel);
	answer($dev, $cancel, 200, 'OK', 'devtag3');
	answer($dev, $inv, 487, 'Request Terminated', 'devtag3');
	my $ack = wait_msg('dev', is_request('ACK', hdr($inv, 'Call-ID')));
	ok($ack && branch_of($ack) eq branch_of($inv), 'timeout: its 487 is ACKed (the INVITE\'s branch)');
	up_send(invite_text('ACK', $cid, $branch, $ch, 1, tag_of(hdr($t408, 'To'))));
	audited('timeout', 'timeout: audited, ended_by timeout');
}

# ---------------------------------------------------------------- 4. the upstream dropped mid-INVITE
{
	my ($cid, $branch, $inv) = start_call('dropped');
	$node->safe_psql('postgres', "SELECT vms.sip_drop_upstream('city')");
	my $cancel = wait_msg('dev', is_request('CANCEL', hdr($inv, 'Call-ID')));
	ok($cancel, 'dropped: the device\'s INVITE is CANCELled') or BAIL_OUT('no CANCEL');
	check_cancel('dropped', $inv, $cancel);
	# a late 200 all the same: ACKed and ended, the stream goes to nobody
	answer($dev, $inv, 200, 'OK', 'devtag4',
		"v=0\r\no=$ch 0 0 IN IP4 127.0.0.1\r\ns=Play\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video 30000 RTP/AVP 96\r\na=sendonly\r\n");
	ok(wait_msg('dev', is_request('ACK', hdr($inv, 'Call-ID'))), 'dropped: a late 200 is ACKed');
	my $bye = wait_msg('dev', is_request('BYE', hdr($inv, 'Call-ID')));
	ok($bye, 'dropped: and ended with a BYE');
	answer($dev, $bye, 200, 'OK') if $bye;
	audited('dropped', 'dropped: audited, ended_by dropped');
	# the upper platform's OPTIONS is answered after vms handled the device's 200: anything it sent up came before
	ok(up_roundtrip(), 'dropped: an OPTIONS of the upper platform is answered after the device\'s 200');
	is(scalar(grep { hdr($_, 'Call-ID') eq $cid && /^SIP\/2\.0 200 / } @{ $inbox{up} }), 0, 'dropped: nothing went up');
}

# ---------------------------------------------------------------- 5. no provisional answer yet
# RFC 3261 9.1: a CANCEL is not sent before the device's provisional answer;
# its INVITE goes on being retransmitted, and the CANCEL follows its first 1xx
{
	$node->safe_psql('postgres', qq{SELECT vms.sip_add_upstream('city', '127.0.0.1', $up_port, '$upper_id', 'upper-pass', '{"keepalive_interval": 3600}');
		SELECT vms.sip_share('city', '{"channels": ["$ch"]}')});
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	until ($node->safe_psql('postgres', "SELECT state FROM vms.sip_upstream_state WHERE upstream = 'city'") eq 'registered')
	{
		die 'the upstream did not register again' if time() > $deadline;
		pump(0.2);
	}
	$n++;
	my $cid = "cancel-$n-" . int(rand(1e9));
	my $branch = "z9hG4bKup$n" . int(rand(1e9));
	up_send(invite_text('INVITE', $cid, $branch, $ch));
	ok(wait_msg('up', is_response(100, 'INVITE', $cid)), 'silent device: the upper platform\'s INVITE is answered 100');
	my $inv = wait_msg('dev', new_invite());
	ok($inv, 'silent device: the device receives the relayed INVITE') or BAIL_OUT('no INVITE at the device');
	my $dcid = hdr($inv, 'Call-ID');
	$old_calls{$dcid} = 1;
	up_send(invite_text('CANCEL', $cid, $branch, $ch));
	ok(wait_msg('up', is_response(200, 'CANCEL', $cid)), 'silent device: the CANCEL is answered 200');
	ok(wait_msg('up', is_response(487, 'INVITE', $cid)), 'silent device: the upper platform\'s INVITE gets 487');
	# what reached the device so far: its INVITE's retransmissions, taken off; then one sent after the
	# CANCEL was handled (the device's socket reads in the order vms sent): no CANCEL before it
	@{ $inbox{dev} } = grep { !(/^INVITE / && hdr($_, 'Call-ID') eq $dcid) } @{ $inbox{dev} };
	my $again = wait_msg('dev', sub { /^INVITE / && hdr($_, 'Call-ID') eq $dcid });
	ok($again, 'silent device: its INVITE is still retransmitted after the CANCEL came');
	is(scalar(grep { /^CANCEL / && hdr($_, 'Call-ID') eq $dcid } @{ $inbox{dev} }), 0,
		'silent device: no CANCEL before its provisional answer');
	answer($dev, $inv, 100, 'Trying');
	my $cancel = wait_msg('dev', is_request('CANCEL', $dcid));
	ok($cancel, 'silent device: the CANCEL follows its 100') or BAIL_OUT('no CANCEL');
	check_cancel('silent device', $inv, $cancel);
	answer($dev, $cancel, 200, 'OK', 'devtag5');
	answer($dev, $inv, 487, 'Request Terminated', 'devtag5');
	my $ack = wait_msg('dev', is_request('ACK', $dcid));
	ok($ack && branch_of($ack) eq branch_of($inv), 'silent device: its 487 is ACKed (the INVITE\'s branch)');
}

# ---------------------------------------------------------------- 6. the 487 goes up until the ACK (17.2.1)
my $dev_sdp = "v=0\r\no=$ch 0 0 IN IP4 127.0.0.1\r\ns=Play\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video 30000 RTP/AVP 96\r\na=sendonly\r\ny=0100000001\r\n";

# every copy of an answer up to the first $count ($secs for each), and their kernel arrival times
sub copies_up
{
	my ($pred, $count, $secs) = @_;
	my @c;
	while (@c < $count)
	{
		my $m = wait_msg('up', $pred, $secs);
		last unless defined $m;
		push @c, $m;
	}
	return @c;
}

# after the ACK: copies the worker sent before it handled the ACK are left behind (a round trip),
# then no copy in 5 s, longer than T2 (4 s), the longest gap between two
sub none_after_ack
{
	my ($pred, $label) = @_;
	ok(up_roundtrip(), "$label: the ACK was handled (a round trip)");
	@{ $inbox{up} } = grep { !$pred->() } @{ $inbox{up} };
	ok(!defined wait_msg('up', $pred, 5), "$label: no copy after the ACK (none in 5 s, T2 is 4 s)");
}

{
	my ($cid, $branch, $inv) = start_call('487 retransmitted');
	up_send(invite_text('CANCEL', $cid, $branch, $ch));
	ok(wait_msg('up', is_response(200, 'CANCEL', $cid)), '487 retransmitted: 200 to the CANCEL');
	my $cancel = wait_msg('dev', is_request('CANCEL', hdr($inv, 'Call-ID')));
	ok($cancel, '487 retransmitted: the device gets the CANCEL');
	answer($dev, $cancel, 200, 'OK', 'devtag6');
	answer($dev, $inv, 487, 'Request Terminated', 'devtag6');
	ok(wait_msg('dev', is_request('ACK', hdr($inv, 'Call-ID'))), '487 retransmitted: the device\'s 487 is ACKed');
	# the upper platform does not ACK: the same 487 again, T1 (0.5 s) after the first, then 2*T1
	my $is487 = is_response(487, 'INVITE', $cid);
	my @c = copies_up($is487, 3, 30);
	is(scalar(@c), 3, '487 retransmitted: without an ACK the 487 comes again, twice at least (Timer G)');
	is(scalar(grep { $_ eq $c[0] } @c), scalar(@c), '487 retransmitted: the same answer byte for byte');
	my @at = grep { defined } @{ $arrived{ $c[0] } // [] };
	my @gap = @at >= 3 ? ($at[1] - $at[0], $at[2] - $at[1]) : (0, 0);
	ok($gap[0] >= 0.45 && $gap[1] >= 0.95,
		sprintf('487 retransmitted: the copies are at least T1, then 2*T1 apart (%.3f s, %.3f s)', @gap));
	# forged ACKs stop nothing: the right fields from another port, or from the right port with another
	# From tag or another CSeq number
	my $totag = tag_of(hdr($c[0], 'To'));
	my $forger = IO::Socket::INET->new(LocalAddr => '127.0.0.1', Proto => 'udp') or die "forger: $!";
	$forger->send(invite_text('ACK', $cid, $branch, $ch, 1, $totag), 0, $vms) or die "send: $!";
	(my $wrong_tag = invite_text('ACK', $cid, $branch, $ch, 1, $totag)) =~ s/;tag=from\Q$cid\E/;tag=forged/;
	up_send($wrong_tag);
	up_send(invite_text('ACK', $cid, $branch, $ch, 2, $totag));
	ok(up_roundtrip(), '487 retransmitted: three forged ACKs were handled (a round trip)');
	@{ $inbox{up} } = grep { !$is487->() } @{ $inbox{up} };
	ok(wait_msg('up', $is487, 30), '487 retransmitted: after ACKs from another port, with another From tag or CSeq, the 487 still comes');
	up_send(invite_text('ACK', $cid, $branch, $ch, 1, $totag));
	none_after_ack($is487, '487 retransmitted');
}

# ---------------------------------------------------------------- 6b. the relayed 200 goes up until the ACK (13.3.1.4)
{
	my ($cid, $branch, $inv) = start_call('200 retransmitted');
	answer($dev, $inv, 200, 'OK', 'devtag6b', $dev_sdp);
	ok(wait_msg('dev', is_request('ACK', hdr($inv, 'Call-ID'))), '200 retransmitted: the device\'s 200 is ACKed');
	my $is200 = is_response(200, 'INVITE', $cid);
	my @c = copies_up($is200, 2, 30);
	is(scalar(@c), 2, '200 retransmitted: without an ACK the relayed 200 comes again');
	is(scalar(grep { $_ eq $c[0] } @c), scalar(@c), '200 retransmitted: the same answer (its SDP) byte for byte');
	my $tag = tag_of(hdr($c[0], 'To'));

	# the worker's SQL fails every round (its claim of requests): the retransmissions go on (they are sent
	# before any SQL step) and the worker does not spin (its CPU time, from /proc, against the time waited)
	my $pid = $node->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'vms sip'");
	my $cpu = sub {
		open(my $fh, '<', "/proc/$pid/stat") or return undef;
		my @f = split(' ', (split(/\) /, scalar(<$fh>), 2))[1]);
		return ($f[11] + $f[12]) / POSIX::sysconf(POSIX::_SC_CLK_TCK());
	};
	$node->safe_psql('postgres', 'ALTER FUNCTION vms._sip_claim_requests(integer) RENAME TO _sip_claim_requests_off');
	my ($cpu0, $t0) = ($cpu->(), time());
	@{ $inbox{up} } = grep { !$is200->() } @{ $inbox{up} };
	my @during = copies_up($is200, 2, 30);
	my ($cpu1, $t1) = ($cpu->(), time());
	is(scalar(@during), 2, '200 retransmitted: while the worker\'s SQL fails every round the 200 still comes again');
	ok(defined $cpu0 && defined $cpu1 && $cpu1 - $cpu0 < 0.5 * ($t1 - $t0),
		sprintf('SQL failing: the worker does not spin (%.2f s of CPU in %.2f s)', ($cpu1 // 0) - ($cpu0 // 0), $t1 - $t0));
	$node->safe_psql('postgres', 'ALTER FUNCTION vms._sip_claim_requests_off(integer) RENAME TO _sip_claim_requests');

	# the upstream's port changes: the genuine ACK still comes from the address the INVITE came from
	my $up2 = IO::Socket::INET->new(LocalAddr => '127.0.0.1', Proto => 'udp') or die "upper 2: $!";
	$node->safe_psql('postgres', "SELECT vms.sip_alter_upstream('city', port => " . $up2->sockport . ')');
	ok(IO::Select->new($up2)->can_read($PostgreSQL::Test::Utils::timeout_default), 'port changed: vms registers to the new port');
	# the ACK of a 2xx is a transaction of its own: another branch
	up_send(invite_text('ACK', $cid, "${branch}ack", $ch, 1, $tag));
	none_after_ack($is200, '200 retransmitted (the ACK from the INVITE\'s address, the upstream moved)');
	my $seen = $registers_up;
	$node->safe_psql('postgres', "SELECT vms.sip_alter_upstream('city', port => $up_port)");
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	until ($registers_up > $seen
		&& $node->safe_psql('postgres', "SELECT state FROM vms.sip_upstream_state WHERE upstream = 'city'") eq 'registered')
	{
		die 'the upstream did not register at its port again' if time() > $deadline;
		pump(0.2);
	}
	up_send(invite_text('BYE', $cid, "${branch}bye", $ch, 2, $tag));
	ok(wait_msg('up', is_response(200, 'BYE', $cid)), '200 retransmitted: the upper platform\'s BYE is answered');
	my $bye = wait_msg('dev', is_request('BYE', hdr($inv, 'Call-ID')));
	ok($bye, '200 retransmitted: the device gets the BYE');
	answer($dev, $bye, 200, 'OK') if $bye;
}

# ---------------------------------------------------------------- 6c. a 200 never ACKed (13.3.1.4)
# retransmitted for 64*T1 (32 s), then the call ends: BYE to the device and to the upper platform
{
	my ($cid, $branch, $inv) = start_call('200 never ACKed');
	# meanwhile, a device that never answers at all (not even 100): 408 up after 16 s, kept and retransmitted
	$n++;
	my $scid = "cancel-$n-" . int(rand(1e9));
	my $sbranch = "z9hG4bKup$n" . int(rand(1e9));
	up_send(invite_text('INVITE', $scid, $sbranch, $ch));
	ok(wait_msg('up', is_response(100, 'INVITE', $scid)), 'mute device: the upper platform\'s INVITE is answered 100');
	my $sinv = wait_msg('dev', new_invite());
	ok($sinv, 'mute device: the device receives the relayed INVITE (and never answers it)');
	$old_calls{ hdr($sinv, 'Call-ID') } = 1 if $sinv;

	answer($dev, $inv, 200, 'OK', 'devtag6c', $dev_sdp);
	ok(wait_msg('dev', is_request('ACK', hdr($inv, 'Call-ID'))), '200 never ACKed: the device\'s 200 is ACKed');
	my $bye = wait_msg('dev', is_request('BYE', hdr($inv, 'Call-ID')));
	ok($bye && tag_of(hdr($bye, 'To')) eq 'devtag6c', '200 never ACKed: after 64*T1 the device gets a BYE');
	answer($dev, $bye, 200, 'OK') if $bye;
	my $up_bye = wait_msg('up', is_request('BYE', $cid));
	ok($up_bye, '200 never ACKed: and the upper platform, in its dialog');
	my @c = grep { is_response(200, 'INVITE', $cid)->() } @{ $inbox{up} };
	# by hand: sent at 0, then 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5 and 31.5 s (T1 doubling to T2 =
	# 4 s), 11 copies, Timer H at 32 s; the last one lands only if the worker kept within 0.5 s of its due
	# times over ten sends on a loaded machine: at least the 10 up to 27.5 s
	my @at = $up_bye && @c ? @{ $arrived{ $c[0] } } : ();
	cmp_ok(scalar(@c), '>=', 10, '200 never ACKed: the 200 went up again meanwhile, 10 times at least (T1, 2*T1, 4*T1, then every T2)');
	my ($first, $last) = @at ? ($at[0], $at[-1]) : (undef, undef);
	my $bye_at = $up_bye ? $arrived{$up_bye}[0] : undef;
	ok(defined $first && defined $bye_at && $bye_at - $first >= 31.5,
		sprintf('200 never ACKed: the BYE up came 64*T1 after the first 200 at least (%.3f s, kernel arrival times)',
			defined $first && defined $bye_at ? $bye_at - $first : -1));
	# Timer H ends it at 32 s, not at the retransmission that would be due after 31.5 s (35.5 s): the BYE
	# comes less than T2 after the last copy (4 s would be that retransmission's gap)
	ok(defined $last && defined $bye_at && $bye_at - $last < 4,
		sprintf('200 never ACKed: the BYE came less than T2 after the last copy (%.3f s): Timer H at 64*T1, not later',
			defined $last && defined $bye_at ? $bye_at - $last : -1));
	audited('no ack', '200 never ACKed: audited, ended_by no ack');

	# the mute device's call: 408 went up (16 s) and is retransmitted until the ACK (17.2.1), not sent once
	my $is408 = is_response(408, 'INVITE', $scid);
	my $t408 = wait_msg('up', $is408);
	ok($t408, 'mute device: 408 to the upper platform');
	my $copies = $t408 ? scalar(@{ $arrived{$t408} }) : 0;
	# by hand: 16 s to the 408, then copies 0.5, 1.5, 3.5, 7.5, 11.5 s after it before the 200's Timer H above
	cmp_ok($copies, '>=', 3, "mute device: the 408 came again without an ACK ($copies copies)");
	up_send(invite_text('ACK', $scid, $sbranch, $ch, 1, tag_of(hdr($t408, 'To')))) if $t408;
	none_after_ack($is408, 'mute device');
	@{ $inbox{dev} } = grep { hdr($_, 'Call-ID') ne hdr($sinv, 'Call-ID') } @{ $inbox{dev} } if $sinv;
}

# ---------------------------------------------------------------- 7. the longest branch kept: 255 characters
{
	my $long = 'z9hG4bK' . ('a' x 248);
	my ($cid, $branch, $inv) = start_call('long branch', $long);
	# one character more: refused (the limit), the call goes on
	up_send(invite_text('CANCEL', $cid, "${long}a", $ch));
	ok(wait_msg('up', is_response(400, 'CANCEL', $cid)), 'long branch: a CANCEL with a 256-character branch: 400');
	up_send(invite_text('CANCEL', $cid, $long, $ch));
	ok(wait_msg('up', is_response(200, 'CANCEL', $cid)), 'long branch: its CANCEL (the same 255-character branch) is answered 200');
	my $t487 = wait_msg('up', is_response(487, 'INVITE', $cid));
	ok($t487, 'long branch: its INVITE gets 487');
	my $cancel = wait_msg('dev', is_request('CANCEL', hdr($inv, 'Call-ID')));
	ok($cancel, 'long branch: the device\'s INVITE is CANCELled');
	answer($dev, $cancel, 200, 'OK', 'devtag7');
	answer($dev, $inv, 487, 'Request Terminated', 'devtag7');
	ok(wait_msg('dev', is_request('ACK', hdr($inv, 'Call-ID'))), 'long branch: the device\'s 487 is ACKed');
	up_send(invite_text('ACK', $cid, $long, $ch, 1, tag_of(hdr($t487, 'To')))) if $t487;
}

# ---------------------------------------------------------------- 8. the device sends its 200 again (13.2.2.4)
{
	my ($cid, $branch, $inv) = start_call('200 again');
	my $dcid = hdr($inv, 'Call-ID');
	up_send(invite_text('CANCEL', $cid, $branch, $ch));
	ok(wait_msg('up', is_response(200, 'CANCEL', $cid)), '200 again: 200 to the CANCEL');
	my $t487 = wait_msg('up', is_response(487, 'INVITE', $cid));
	up_send(invite_text('ACK', $cid, $branch, $ch, 1, tag_of(hdr($t487, 'To')))) if $t487;
	my $cancel = wait_msg('dev', is_request('CANCEL', $dcid));
	ok($cancel, '200 again: the device gets the CANCEL');
	answer($dev, $inv, 200, 'OK', 'devtag8', $dev_sdp);
	answer($dev, $cancel, 481, 'Call/Transaction Does Not Exist', 'devtag8');
	my $ack = wait_msg('dev', is_request('ACK', $dcid));
	ok($ack, '200 again: the 200 that crossed the CANCEL is ACKed');
	my $bye = wait_msg('dev', is_request('BYE', $dcid));
	ok($bye, '200 again: and ended with a BYE');
	answer($dev, $bye, 200, 'OK') if $bye;
	# that ACK was lost: the device sends its 200 again, and again
	for my $k (1 .. 2)
	{
		answer($dev, $inv, 200, 'OK', 'devtag8', $dev_sdp);
		my $again = wait_msg('dev', is_request('ACK', $dcid), 30);
		ok($again && hdr($again, 'CSeq') eq '1 ACK' && tag_of(hdr($again, 'To')) eq 'devtag8',
			"200 again: the retransmitted 200 ($k) is ACKed again, in its dialog");
		is($again, $ack, "200 again: that ACK ($k) is the first one byte for byte");
	}
	ok(dev_roundtrip(), '200 again: the device\'s OPTIONS is answered after them');
	is(scalar(grep { /^BYE / && hdr($_, 'Call-ID') eq $dcid } @{ $inbox{dev} }), 0, '200 again: no second BYE');
	ok(up_roundtrip(), '200 again: and the upper platform\'s OPTIONS');
	is(scalar(grep { hdr($_, 'Call-ID') eq $cid && /^SIP\/2\.0 200 / } @{ $inbox{up} }), 0, '200 again: nothing went up');
}

# ---------------------------------------------------------------- 8b. a device's error answer (486)
# relayed up and retransmitted until the ACK; a BYE meanwhile: 481 (no dialog); after the ACK the
# relay is kept Timer I (T4 = 5 s, 17.2.1) for the INVITE's retransmissions, then freed
{
	my ($cid, $branch, $inv) = start_call('486');
	answer($dev, $inv, 486, 'Busy Here', 'devtag8b');
	ok(wait_msg('dev', is_request('ACK', hdr($inv, 'Call-ID'))), '486: the device\'s 486 is ACKed');
	my $is486 = is_response(486, 'INVITE', $cid);
	my $t486 = wait_msg('up', $is486);
	ok($t486, '486: relayed up');
	up_send(invite_text('BYE', $cid, "${branch}bye", $ch, 2, tag_of(hdr($t486, 'To'))));
	ok(wait_msg('up', is_response(481, 'BYE', $cid)), '486: a BYE before the ACK: 481 (no dialog)');
	my $t_ack = time();
	up_send(invite_text('ACK', $cid, $branch, $ch, 1, tag_of(hdr($t486, 'To'))));
	ok(up_roundtrip(), '486: the ACK was handled (a round trip)');
	@{ $inbox{up} } = grep { !$is486->() } @{ $inbox{up} };
	up_send(invite_text('INVITE', $cid, $branch, $ch));
	ok(wait_msg('up', $is486), '486: the INVITE again right after the ACK gets the same 486');
	# then, every 0.5 s, the INVITE again until it is a new call (100): within 20 s of the ACK (the relay
	# was kept 32 s before), not before Timer I
	my ($new, $deadline) = (undef, $t_ack + 20);
	while (!$new && time() < $deadline)
	{
		up_send(invite_text('INVITE', $cid, $branch, $ch));
		$new = wait_msg('up', is_response(100, 'INVITE', $cid), 0.5);
	}
	ok($new, '486: the relay is freed after the ACK: the INVITE sent again is a new call within 20 s');
	my $freed_at = $new ? $arrived{$new}[-1] : undef;
	ok(defined $freed_at && $freed_at - $t_ack >= 4.9,
		sprintf('486: not before Timer I (T4 = 5 s) after the ACK (%.3f s)', defined $freed_at ? $freed_at - $t_ack : -1));
	# that new call: the device is busy again
	my $inv2 = wait_msg('dev', new_invite());
	ok($inv2, '486: the new call reaches the device');
	$old_calls{ hdr($inv2, 'Call-ID') } = 1 if $inv2;
	# the old relay's answers to the INVITEs sent meanwhile are left behind (a round trip)
	ok(up_roundtrip(), '486: a round trip');
	@{ $inbox{up} } = grep { !$is486->() } @{ $inbox{up} };
	answer($dev, $inv2, 486, 'Busy Here', 'devtag8c') if $inv2;
	my $again = wait_msg('up', $is486);
	ok($again, '486: the new call\'s 486 goes up');
	up_send(invite_text('ACK', $cid, $branch, $ch, 1, tag_of(hdr($again, 'To')))) if $again;
	@{ $inbox{up} } = grep { hdr($_, 'Call-ID') ne $cid } @{ $inbox{up} };
}

# ---------------------------------------------------------------- 8c. over TCP the 200 goes up until the ACK too (13.3.1.4)
# a second upper platform, over TCP: vms connects to it; it reads messages framed by Content-Length
{
	my $upper2 = '34010000002000000002';
	my $tl = IO::Socket::INET->new(LocalAddr => '127.0.0.1', Proto => 'tcp', Listen => 5, ReuseAddr => 1) or die "tcp: $!";
	my $tport = $tl->sockport;
	my ($tc, $tbuf, @tin) = (undef, '');
	my $tcp_answer = sub {
		my ($req, $code, $reason) = @_;
		my @via = $req =~ /^(Via[ \t]*:[^\r\n]*)/mig;
		my $to = hdr($req, 'To');
		$to .= ';tag=t' . int(rand(1e9)) if $to !~ /;tag=/;
		return "SIP/2.0 $code $reason\r\n" . join('', map { "$_\r\n" } @via) . 'From: ' . hdr($req, 'From')
		  . "\r\nTo: $to\r\nCall-ID: " . hdr($req, 'Call-ID') . "\r\nCSeq: " . hdr($req, 'CSeq') . "\r\nContent-Length: 0\r\n\r\n";
	};
	my $tcp_pump = sub {
		my ($wait) = @_;
		for my $s (IO::Select->new(grep { defined } $tl, $tc)->can_read($wait))
		{
			if ($s == $tl)
			{
				$tc = $tl->accept;
				next;
			}
			my $got = sysread($tc, $tbuf, 65535, length($tbuf));
			unless ($got)
			{
				undef $tc;
				next;
			}
			while ((my $hend = index($tbuf, "\r\n\r\n")) >= 0)
			{
				my $cl = hdr(substr($tbuf, 0, $hend + 2), 'Content-Length') || 0;
				last if length($tbuf) < $hend + 4 + $cl;
				my $m = substr($tbuf, 0, $hend + 4 + $cl, '');
				if ($m =~ /^(REGISTER|MESSAGE|NOTIFY|OPTIONS|SUBSCRIBE) /) { syswrite($tc, $tcp_answer->($m, 200, 'OK')) }
				else { push @tin, $m }
			}
		}
		pump(0);
	};
	my $tcp_wait = sub {
		my ($pred, $secs) = @_;
		my $deadline = time() + ($secs // $PostgreSQL::Test::Utils::timeout_default);
		while (1)
		{
			for my $i (0 .. $#tin)
			{
				local $_ = $tin[$i];
				return splice(@tin, $i, 1) if $pred->($_);
			}
			return undef if time() > $deadline;
			$tcp_pump->(0.2);
		}
	};
	my $tcp_text = sub {
		my $m = invite_text(@_);
		$m =~ s{SIP/2\.0/UDP 127\.0\.0\.1:$up_port}{SIP/2.0/TCP 127.0.0.1:$tport};
		$m =~ s{$upper_id}{$upper2}g;
		return $m;
	};
	$node->safe_psql('postgres', qq{SELECT vms.sip_add_upstream('tcpcity', '127.0.0.1', $tport, '$upper2', 'upper-pass',
		'{"keepalive_interval": 3600, "transport": "tcp"}');
		SELECT vms.sip_share('tcpcity', '{"channels": ["$ch"]}')});
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	until ($node->safe_psql('postgres', "SELECT state FROM vms.sip_upstream_state WHERE upstream = 'tcpcity'") eq 'registered')
	{
		die 'the TCP upstream did not register' if time() > $deadline;
		$tcp_pump->(0.2);
	}
	pass('TCP: vms registers to the second upper platform over TCP');
	$n++;
	my $cid = "cancel-$n-" . int(rand(1e9));
	my $branch = "z9hG4bKup$n" . int(rand(1e9));
	syswrite($tc, $tcp_text->('INVITE', $cid, $branch, $ch));
	ok($tcp_wait->(is_response(100, 'INVITE', $cid)), 'TCP: the INVITE is answered 100');
	my $inv = wait_msg('dev', new_invite());
	ok($inv, 'TCP: the device receives the relayed INVITE') or BAIL_OUT('no INVITE at the device');
	$old_calls{ hdr($inv, 'Call-ID') } = 1;
	answer($dev, $inv, 200, 'OK', 'devtag8t', $dev_sdp);
	my $is200 = is_response(200, 'INVITE', $cid);
	my $first = $tcp_wait->($is200);
	ok($first, 'TCP: the device\'s 200 goes up');
	my $second = $tcp_wait->($is200, 30);
	ok($second && $second eq $first, 'TCP: without an ACK the same 200 comes again over TCP (13.3.1.4: whatever the transport)');
	syswrite($tc, $tcp_text->('ACK', $cid, "${branch}ack", $ch, 1, tag_of(hdr($first, 'To'))));
	# after the ACK: an OPTIONS answered on the connection comes after anything sent before the ACK was
	# handled; then none in 5 s (T2 is 4 s)
	syswrite($tc, $tcp_text->('OPTIONS', "opt-$cid", "${branch}opt", $lower_id));
	ok($tcp_wait->(is_response('\d+', 'OPTIONS', "opt-$cid")), 'TCP: the ACK was handled (a round trip)');
	@tin = grep { !$is200->() } @tin;
	ok(!defined $tcp_wait->($is200, 5), 'TCP: no copy after the ACK (none in 5 s)');
	syswrite($tc, $tcp_text->('BYE', $cid, "${branch}bye", $ch, 2, tag_of(hdr($first, 'To'))));
	ok($tcp_wait->(is_response(200, 'BYE', $cid)), 'TCP: the upper platform\'s BYE is answered');
	my $bye = wait_msg('dev', is_request('BYE', hdr($inv, 'Call-ID')));
	ok($bye, 'TCP: the device gets the BYE');
	answer($dev, $bye, 200, 'OK') if $bye;
	$node->safe_psql('postgres', "SELECT vms.sip_drop_upstream('tcpcity')");
}

# ---------------------------------------------------------------- 9. the upstream disabled
# as when it is dropped: the established call's device gets a BYE, the pending INVITE a CANCEL
{
	my ($cid1, $branch1, $inv1) = start_call('disabled, established');
	answer($dev, $inv1, 200, 'OK', 'devtag9', $dev_sdp);
	ok(wait_msg('dev', is_request('ACK', hdr($inv1, 'Call-ID'))), 'disabled: the established call\'s 200 is ACKed');
	my $t200 = wait_msg('up', is_response(200, 'INVITE', $cid1));
	ok($t200, 'disabled: and relayed up');
	up_send(invite_text('ACK', $cid1, "${branch1}ack", $ch, 1, tag_of(hdr($t200, 'To')))) if $t200;
	my ($cid2, $branch2, $inv2) = start_call('disabled, pending');
	# a third call CANCELled, its 487 not ACKed, the device not answered yet: the 487 is being retransmitted
	my ($cid3, $branch3, $inv3) = start_call('disabled, cancelled');
	up_send(invite_text('CANCEL', $cid3, $branch3, $ch));
	ok(wait_msg('up', is_response(200, 'CANCEL', $cid3)), 'disabled: the third call\'s CANCEL is answered 200');
	my $is487c = is_response(487, 'INVITE', $cid3);
	ok(copies_up($is487c, 2, 30) == 2, 'disabled: the third call\'s 487 goes up, and again (no ACK)');
	my $cancel3 = wait_msg('dev', is_request('CANCEL', hdr($inv3, 'Call-ID')));
	ok($cancel3, 'disabled: the third call\'s device gets its CANCEL (and does not answer yet)');
	$node->safe_psql('postgres', "SELECT vms.sip_alter_upstream('city', enabled => false)");
	my $bye = wait_msg('dev', is_request('BYE', hdr($inv1, 'Call-ID')));
	ok($bye && tag_of(hdr($bye, 'To')) eq 'devtag9', 'disabled: the established call\'s device gets a BYE');
	answer($dev, $bye, 200, 'OK') if $bye;
	# the upper platform is told: a BYE in the established call's dialog, 487 to the pending INVITE
	my $up_bye = wait_msg('up', is_request('BYE', $cid1));
	ok($up_bye && tag_of(hdr($up_bye, 'To')) eq "from$cid1" && tag_of(hdr($up_bye, 'From')) eq tag_of(hdr($t200, 'To')),
		'disabled: the upper platform gets a BYE in the established call\'s dialog');
	my $is487p = is_response(487, 'INVITE', $cid2);
	ok(wait_msg('up', $is487p), 'disabled: the pending INVITE is answered 487 up');
	my $cancel = wait_msg('dev', is_request('CANCEL', hdr($inv2, 'Call-ID')));
	ok($cancel, 'disabled: the pending INVITE is CANCELled') or BAIL_OUT('no CANCEL');
	check_cancel('disabled', $inv2, $cancel);
	answer($dev, $cancel, 200, 'OK', 'devtag9b');
	answer($dev, $inv2, 487, 'Request Terminated', 'devtag9b');
	ok(wait_msg('dev', is_request('ACK', hdr($inv2, 'Call-ID'))), 'disabled: its 487 is ACKed');
	# the third call's device answers its CANCEL now: ACKed, nothing goes up
	answer($dev, $cancel3, 200, 'OK', 'devtag9c');
	answer($dev, $inv3, 487, 'Request Terminated', 'devtag9c');
	ok(wait_msg('dev', is_request('ACK', hdr($inv3, 'Call-ID'))), 'disabled: the third call\'s 487 is ACKed');
	wait_ok($node, qq{SELECT count(*) = 2 FROM vms.audit_log WHERE action = 'sip_upstream_bye' AND object = 'city'
		AND detail ->> 'ended_by' = 'disabled'}, 'disabled: both ends audited, ended_by disabled');
	# audited in order: the 486's BYE (8b, answered 481) was not audited, the early BYE's and 6b's were
	is($node->safe_psql('postgres', qq{SELECT count(*) FROM vms.audit_log WHERE action = 'sip_upstream_bye' AND object = 'city'
		AND detail ->> 'ended_by' = 'upstream'}), '2', 'disabled: no call ended by the upper platform but the two it had');
	# after that nothing more goes up for these calls (their ACKs could never match now) and no second BYE goes
	# anywhere: none in 5 s (T2 is 4 s, the longest gap between two copies)
	ok(up_roundtrip(), 'disabled: a round trip after it');
	ok(dev_roundtrip(), 'disabled: and from the device');
	my $ours = sub { my $c = hdr($_, 'Call-ID'); $c eq $cid1 || $c eq $cid2 || $c eq $cid3 };
	@{ $inbox{up} } = grep { !$ours->() } @{ $inbox{up} };
	is(scalar(grep { /^BYE / && hdr($_, 'Call-ID') eq hdr($inv1, 'Call-ID') } @{ $inbox{dev} }), 0, 'disabled: no second BYE to the device so far');
	ok(!defined wait_msg('up', $ours, 5), 'disabled: nothing more goes up for its calls (none in 5 s): no 487 again, no second BYE');
	ok(!defined wait_msg('dev', is_request('BYE', hdr($inv1, 'Call-ID')), 0.5), 'disabled: no second BYE to the device');
	wait_ok($node, "SELECT state = 'disabled' FROM vms.sip_upstream_state WHERE upstream = 'city'",
		'disabled: the upstream is disabled');
}

like($node->safe_psql('postgres', "SELECT state FROM vms.worker_status WHERE name = 'sip'"), qr/^running/, 'the worker runs on');
$node->stop;
done_testing();
