# The SIP worker against a hostile network (issue 12): a device's session
# belongs to the transport it registered over, a captured REGISTER cannot be
# replayed, credential changes reach the running worker at once and in
# commit order and end the live session, a device changes only its own
# channels and catalogue nodes, failed authentications count only after a
# valid nonce and ban the source address, not the device, 401 challenges
# are rate-limited per address, device text is stored as UTF-8, and the worker's memory
# stays bounded (an error in one message, a flood of XML names, a database
# that stops taking batches).  The devices here are a small SIP client in
# this file speaking UDP and TCP from sockets it controls, so a second
# socket can pretend to be a registered device.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VmsTest;
use IO::Socket::INET;
use IO::Select;
use Digest::MD5 qw(md5_hex);
use Encode qw(encode decode);

my $sip_port = PostgreSQL::Test::Cluster::get_free_port();
my ($server_id, $realm) = ($SIP_SERVER_ID, $SIP_REALM);
my $ruri = "sip:$server_id\@$realm";
# how long one answer may take on a loaded machine before the test fails
my $answer_timeout = $PostgreSQL::Test::Utils::timeout_default;

my $node = vms_node('sipsec',
	'vms.viid_enabled' => 'off',
	'vms.inspect_enabled' => 'off',
	'vms.sip_id' => $server_id,
	'vms.sip_listen' => '127.0.0.1',
	'vms.sip_port' => $sip_port,
	'vms.sip_keepalive_interval' => 60,
	'vms.sip_keepalive_count' => 3,
	'vms.sip_flush_interval' => 200,
	'vms.sip_ban_failures' => 100,
	'vms.sip_max_batch' => 16,
	'vms.sip_max_message' => 1048576,
	'log_min_messages' => 'log');

sub dev { return sprintf('3402000000132%07d', $_[0]); }
my ($d_udp, $d_tcp, $d_gbk, $d_cred, $d_noqop, $d_gone, $d_first, $d_second, $d_spare) = map { dev($_) } (1 .. 9);
my ($d_owner, $d_other, $d_ban, $d_rekey) = map { dev($_) } (10 .. 13);
my $flood = "code::text BETWEEN '" . dev(100) . "' AND '" . dev(249) . "'";
$node->safe_psql('postgres', qq{
INSERT INTO vms.device (code, name) SELECT ('3402000000132' || lpad(i::text, 7, '0'))::vms.gbcode, 'IPC ' || i
  FROM generate_series(1, 13) i;
INSERT INTO vms.device (code, name) SELECT ('3402000000132' || lpad(i::text, 7, '0'))::vms.gbcode, 'IPC ' || i
  FROM generate_series(100, 249) i;
SELECT count(vms.device_set_password(code, 'pw-' || code::text, '$realm')) FROM vms.device;
});
sub pw { return "pw-$_[0]"; }

sip_running($node);
# "running" may come before the sockets are open (the worker first waits for the extension): wait for TCP to accept
{
	my $up;
	for (1 .. 10 * $answer_timeout)
	{
		$up = IO::Socket::INET->new(Proto => 'tcp', PeerAddr => "127.0.0.1:$sip_port") and last;
		select(undef, undef, undef, 0.1);
	}
	$up or die "the sip worker never listened on TCP port $sip_port";
	close $up;
}

sub sql { return $node->safe_psql('postgres', $_[0]); }
sub counter { return sql("SELECT coalesce((counters ->> '$_[0]')::bigint, -1) FROM vms.worker_status WHERE name = 'sip'"); }
sub counter_reaches
{
	my ($name, $n) = @_;
	return $node->poll_query_until('postgres',
		"SELECT coalesce((counters ->> '$name')::bigint, -1) >= $n FROM vms.worker_status WHERE name = 'sip'");
}

###########################################################################
# a small SIP client: one UDP or TCP socket, messages framed by Content-Length
###########################################################################
my $serial = 0;
sub rnd { $serial++; return sprintf('%x%06x', $$, $serial) . int(rand(1e6)); }

sub client
{
	my ($transport, $local) = @_;
	my $s = IO::Socket::INET->new(
		Proto => $transport eq 'TCP' ? 'tcp' : 'udp',
		LocalAddr => $local // '127.0.0.1',
		PeerAddr => "127.0.0.1:$sip_port") or die "socket: $!";
	binmode $s;
	return { s => $s, tr => $transport, buf => '', pending => [] };
}

sub sendraw
{
	my ($c, $bytes) = @_;
	if ($c->{tr} eq 'TCP')
	{
		my $off = 0;
		while ($off < length($bytes))
		{
			my $n = $c->{s}->syswrite($bytes, length($bytes) - $off, $off);
			die "TCP write: $!" unless defined $n;
			$off += $n;
		}
	}
	else { defined $c->{s}->send($bytes) or die "UDP send: $!"; }
}

sub parse_msg
{
	my ($raw) = @_;
	my ($head, $body) = split /\r?\n\r?\n/, $raw, 2;
	my @lines = split /\r?\n/, $head;
	my $first = shift @lines;
	my %m = (raw => $raw, body => $body // '', h => {});
	if ($first =~ m{^SIP/2\.0 (\d+) (.*)$}) { $m{status} = $1; $m{reason} = $2; }
	elsif ($first =~ m{^(\w+) (\S+) SIP/2\.0}) { $m{method} = $1; $m{uri} = $2; }
	for my $l (@lines)
	{
		push @{ $m{h}{ lc $1 } }, $2 if $l =~ /^([\w-]+)\s*:\s*(.*)$/;
	}
	($m{callid}) = @{ $m{h}{'call-id'} // [''] };
	($m{cseq}) = @{ $m{h}{cseq} // [''] };
	return \%m;
}

# the next message the platform sends this client; undef after the timeout
sub recv_msg
{
	my ($c, $timeout) = @_;
	$timeout //= $answer_timeout;
	return shift @{ $c->{pending} } if @{ $c->{pending} };
	my $sel = IO::Select->new($c->{s});
	for (;;)
	{
		if ($c->{tr} eq 'TCP' && $c->{buf} =~ /\A(.*?\r?\n\r?\n)/s)
		{
			my $h = $1;
			my ($cl) = $h =~ /^Content-Length:\s*(\d+)/mi;
			$cl //= 0;
			if (length($c->{buf}) >= length($h) + $cl)
			{
				my $raw = substr($c->{buf}, 0, length($h) + $cl, '');
				return parse_msg($raw);
			}
		}
		return undef unless $sel->can_read($timeout);
		my $buf;
		if ($c->{tr} eq 'TCP')
		{
			my $n = $c->{s}->sysread($buf, 70000);
			return undef unless $n;
			$c->{buf} .= $buf;
		}
		else
		{
			$c->{s}->recv($buf, 70000);
			return parse_msg($buf);
		}
	}
}

# the answer to the request with this Call-ID; other messages wait in line
sub answer_to
{
	my ($c, $callid) = @_;
	my @other;
	while (my $m = recv_msg($c))
	{
		if (defined $m->{status} && $m->{callid} eq $callid)
		{
			unshift @{ $c->{pending} }, @other;
			return $m;
		}
		push @other, $m;
	}
	unshift @{ $c->{pending} }, @other;
	return { status => 'none' };
}

sub request
{
	my ($c, %a) = @_;
	my ($ip, $port) = ($c->{s}->sockhost, $c->{s}->sockport);
	my $body = $a{body} // '';
	my $to = $a{method} eq 'REGISTER' ? $a{code} : $server_id;
	my $dom = $a{dom} // $realm;
	my $msg = "$a{method} " . ($a{uri} // "sip:$server_id\@$dom") . " SIP/2.0\r\n"
	  . "Via: SIP/2.0/$c->{tr} $ip:$port;rport;branch=z9hG4bK" . rnd() . "\r\n"
	  . "From: <sip:$a{code}\@$dom>;tag=" . rnd() . "\r\n"
	  . "To: <sip:$to\@$dom>\r\n"
	  . "Call-ID: $a{callid}\r\n"
	  . "CSeq: " . ($a{cseq} // 1) . " $a{method}\r\n"
	  . "Max-Forwards: 70\r\n"
	  . "Contact: <sip:$a{code}\@$ip:$port>\r\n"
	  . ($a{extra} // '')
	  . (defined $a{ua} ? "User-Agent: $a{ua}\r\n" : '')
	  . (length $body ? "Content-Type: Application/MANSCDP+xml\r\n" : '')
	  . "Content-Length: " . length($body) . "\r\n\r\n" . $body;
	$msg =~ s/\r\n/\n/g if $a{lf_only};
	return $msg;
}

# send a request, return the platform's answer
sub ask
{
	my ($c, %a) = @_;
	$a{callid} //= rnd();
	sendraw($c, request($c, %a));
	return answer_to($c, $a{callid});
}

sub challenge_of
{
	my ($m) = @_;
	for my $w (@{ $m->{h}{'www-authenticate'} // [] })
	{
		next unless $w =~ /algorithm=MD5\b/;
		my %p;
		$p{ lc $1 } = $2 // $3 while $w =~ /(\w+)=(?:"([^"]*)"|([^\s,]+))/g;
		return \%p;
	}
	return undef;
}

sub authorization
{
	my (%a) = @_;
	my $ha1 = md5_hex("$a{code}:$a{realm}:$a{password}");
	my $uri = $a{digest_uri} // $ruri;
	my $ha2 = md5_hex("REGISTER:$uri");
	my $h = "Authorization: Digest username=\"$a{code}\", realm=\"$a{realm}\", nonce=\"$a{nonce}\", uri=\"$uri\", algorithm=MD5";
	if ($a{qop})
	{
		my $cnonce = rnd();
		$h .= ", response=\"" . md5_hex("$ha1:$a{nonce}:$a{nc}:$cnonce:auth:$ha2") . "\", qop=auth, nc=$a{nc}, cnonce=\"$cnonce\"";
	}
	else
	{
		$h .= ", response=\"" . md5_hex("$ha1:$a{nonce}:$ha2") . "\"";
	}
	return "$h\r\n";
}

# REGISTER with digest: the final answer, the REGISTER that carried the
# credentials (bytes, for replays) and the challenge
sub register
{
	my ($c, $code, %o) = @_;
	my $callid = rnd();
	my $r1 = ask($c, method => 'REGISTER', code => $code, callid => $callid, cseq => 1, extra => "Expires: 3600\r\n",
		ua => $o{ua});
	return ($r1) unless $r1->{status} eq '401';
	my $ch = challenge_of($r1);
	my $qop = exists $o{qop} ? $o{qop} : defined $ch->{qop};
	my $auth = authorization(code => $code, realm => $ch->{realm}, password => $o{password} // pw($code),
		nonce => $ch->{nonce}, qop => $qop, nc => $o{nc} // '00000001', digest_uri => $o{digest_uri});
	my $msg = request($c, method => 'REGISTER', code => $code, callid => $callid, cseq => 2,
		extra => $auth . "Expires: 3600\r\n", ua => $o{ua});
	sendraw($c, $msg);
	return (answer_to($c, $callid), $msg, $ch);
}

sub keepalive_body
{
	my ($code) = @_;
	return "<?xml version=\"1.0\" encoding=\"GB2312\"?>\r\n<Notify>\r\n<CmdType>Keepalive</CmdType>\r\n<SN>"
	  . ++$serial . "</SN>\r\n<DeviceID>$code</DeviceID>\r\n<Status>OK</Status>\r\n</Notify>\r\n";
}
sub keepalive { my ($c, $code) = @_; return ask($c, method => 'MESSAGE', code => $code, body => keepalive_body($code)); }

sub session { my ($code) = @_; return sql("SELECT transport || ' ' || port FROM vms.device_session WHERE device_code = '$code'"); }

# a point after which everything the worker did before is in the database:
# a new keepalive of the TCP device, written by a later flush
my ($tcp1, $tcp2);
sub barrier
{
	my $before = sql("SELECT coalesce(last_keepalive_at, '-infinity') FROM vms.device_session WHERE device_code = '$d_tcp'");
	is(keepalive($tcp1, $d_tcp)->{status}, '200', 'barrier: the TCP device keeps alive');
	# the steps after a barrier read the database as of it: a barrier that
	# never passes is a failure here, not a later puzzling one
	wait_ok($node,
			"SELECT last_keepalive_at > '$before' FROM vms.device_session WHERE device_code = '$d_tcp'",
		'barrier: the keepalive is written by a later flush')
	  or die 'the barrier keepalive was never written to vms.device_session';
}

###########################################################################
# framing: on one TCP connection an LF-only message followed by a CRLF one
###########################################################################
{
	my $c = client('TCP');
	my ($a, $b) = (rnd(), rnd());
	sendraw($c, "\r\n" . request($c, method => 'OPTIONS', code => $d_udp, callid => $a, lf_only => 1)
		  . request($c, method => 'OPTIONS', code => $d_udp, callid => $b));
	is(answer_to($c, $a)->{status}, '200', 'framing: an LF-only OPTIONS is answered on its own');
	is(answer_to($c, $b)->{status}, '200', 'framing: the CRLF OPTIONS after it on the same connection too');
	close $c->{s};
}

###########################################################################
# registration, and who may speak for a registered device
###########################################################################
my $udp_a = client('UDP');
my $udp_b = client('UDP');
my ($r, $reg_a, $ch_a) = register($udp_a, $d_udp);
is($r->{status}, '200', 'UDP device registers (digest MD5, qop=auth)');
is($ch_a->{qop}, 'auth', 'the challenge offers qop="auth"');
like($ch_a->{nonce}, qr/^[0-9a-f]{48}$/, 'with a nonce of time, sequence and MAC');
$tcp1 = client('TCP');
$tcp2 = client('TCP');
($r) = register($tcp1, $d_tcp);
is($r->{status}, '200', 'TCP device registers');
wait_ok($node, "SELECT count(*) = 2 FROM vms.device WHERE online AND code IN ('$d_udp', '$d_tcp')",
	'both online');
my $udp_session = session($d_udp);
is($udp_session, 'UDP ' . $udp_a->{s}->sockport, 'the UDP session records the registering socket');

my $wrong0 = counter('wrong_source');
my $parse0 = counter('parse_errors');
$r = keepalive($udp_b, $d_udp);
is($r->{status}, '403', 'spoofed: a keepalive for the UDP device from another UDP port is refused 403');
$r = ask($udp_b, method => 'MESSAGE', code => $d_udp, body => '<?xml version="1.0"?><Notify><CmdType>Catalog</CmdType><broken');
is($r->{status}, '403', 'spoofed: a malformed body from elsewhere is refused before it is parsed');
$r = ask($udp_b, method => 'NOTIFY', code => $d_udp, extra => "Event: Catalog\r\n",
	body => "<?xml version=\"1.0\"?>\r\n<Notify>\r\n<CmdType>Catalog</CmdType>\r\n<SN>7</SN>\r\n<DeviceID>$d_udp</DeviceID>\r\n"
	  . "<SumNum>1</SumNum>\r\n<DeviceList Num=\"1\">\r\n<Item>\r\n<DeviceID>34020000001310000666</DeviceID>\r\n"
	  . "<Name>injected</Name>\r\n<Event>ADD</Event>\r\n</Item>\r\n</DeviceList>\r\n</Notify>\r\n");
is($r->{status}, '403', 'spoofed: a catalog NOTIFY from elsewhere is refused');
$r = ask($udp_b, method => 'MESSAGE', code => $d_udp,
	body => "<?xml version=\"1.0\"?>\r\n<Notify>\r\n<CmdType>Alarm</CmdType>\r\n<SN>8</SN>\r\n<DeviceID>$d_udp</DeviceID>\r\n"
	  . "<AlarmPriority>1</AlarmPriority>\r\n<AlarmMethod>2</AlarmMethod>\r\n</Notify>\r\n");
is($r->{status}, '403', 'spoofed: an alarm from elsewhere is refused');
is(keepalive($tcp2, $d_tcp)->{status}, '403', 'spoofed: a keepalive for the TCP device on a second TCP connection is refused');
is(keepalive($udp_b, $d_tcp)->{status}, '403', 'spoofed: and over UDP');
ok(counter_reaches('wrong_source', $wrong0 + 6), 'each refusal is counted (wrong_source)');
barrier();
is(counter('parse_errors'), $parse0, 'no body from elsewhere was parsed (parse_errors unchanged)');
is(session($d_udp), $udp_session, 'the spoofed messages did not move the UDP device');
is(sql("SELECT count(*) FROM vms.channel WHERE code = '34020000001310000666'"), '0', 'no channel injected');
is(sql("SELECT count(*) FROM vms.alarm WHERE source = 'sip'"), '0', 'no alarm injected');
is(keepalive($udp_a, $d_udp)->{status}, '200', 'the device itself is still answered');

# responses: only from the device the query went to
{
	my $rid = sql("SELECT vms.sip_query_device_info('$d_udp')");
	my $query = recv_msg($udp_a);
	ok($query && ($query->{method} // '') eq 'MESSAGE' && $query->{body} =~ /<SN>(\d+)<\/SN>/, 'the DeviceInfo query reaches the device');
	my ($sn) = $query->{body} =~ /<SN>(\d+)<\/SN>/;
	my $answer = sub {
		my ($c, $maker) = @_;
		(my $resp = $query->{raw}) =~ s/\A[^\r\n]*\r\n/SIP\/2.0 200 OK\r\n/;
		$resp =~ s/\r\n\r\n.*\z/\r\n\r\n/s;
		$resp =~ s/^Content-Length:.*$/Content-Length: 0\r/m;
		$resp =~ s/^Content-Type:.*\r\n//m;
		sendraw($c, $resp);
		return ask($c, method => 'MESSAGE', code => $d_udp,
			body => "<?xml version=\"1.0\"?>\r\n<Response>\r\n<CmdType>DeviceInfo</CmdType>\r\n<SN>$sn</SN>\r\n"
			  . "<DeviceID>$d_udp</DeviceID>\r\n<Result>OK</Result>\r\n<Manufacturer>$maker</Manufacturer>\r\n</Response>\r\n");
	};
	my $w = counter('wrong_source');
	is($answer->($udp_b, 'Spoofer')->{status}, '403', 'spoofed: a query answer from elsewhere is refused');
	ok(counter_reaches('wrong_source', $w + 2), 'the spoofed 200 and answer are counted');
	is($answer->($udp_a, 'Hikvision')->{status}, '200', 'the device answers the query');
	is(sql("SELECT state || ' ' || (result ->> 'Manufacturer') FROM vms.sip_request_wait($rid, 60)"), 'done Hikvision',
		'the request holds the device\'s answer, not the spoofer\'s');
}

# an offline device is not revived, nor moved, from elsewhere
sql("UPDATE vms.device_session SET keepalive_interval = 5, keepalive_count = 1 WHERE device_code = '$d_udp'");
wait_ok($node, "SELECT NOT online FROM vms.device WHERE code = '$d_udp'",
	'with a 5 s keepalive deadline and no keepalives the UDP device goes offline');
is(keepalive($udp_b, $d_udp)->{status}, '403', 'spoofed: a keepalive from elsewhere for the offline device is refused');
barrier();
is(sql("SELECT online FROM vms.device WHERE code = '$d_udp'"), 'f', 'and did not bring it back online');
is(session($d_udp), $udp_session, 'nor move it');
is(keepalive($udp_a, $d_udp)->{status}, '200', 'a keepalive from the device itself revives it');
wait_ok($node, "SELECT online FROM vms.device WHERE code = '$d_udp'", 'online again');
sql("UPDATE vms.device_session SET keepalive_interval = NULL, keepalive_count = NULL WHERE device_code = '$d_udp'");

###########################################################################
# digest: replays, the digest uri, qop per device
###########################################################################
{
	my $rep0 = counter('replayed');
	my $regs0 = counter('registrations');
	sendraw($udp_a, $reg_a);
	my ($callid) = $reg_a =~ /^Call-ID: (\S+)/m;
	$r = answer_to($udp_a, $callid);
	is($r->{status}, '401', 'replay: the captured REGISTER sent again from its own address is challenged, not accepted');
	like(join(' ', @{ $r->{h}{'www-authenticate'} }), qr/stale=TRUE/, 'with stale=TRUE');
	sendraw($udp_b, $reg_a);
	is(answer_to($udp_b, $callid)->{status}, '401', 'replay: the captured REGISTER from another address is challenged');
	ok(counter_reaches('replayed', $rep0 + 1), 'the replay is counted (replayed)');
	barrier();
	is(counter('registrations'), $regs0, 'no registration came of either');
	is(session($d_udp), $udp_session, 'the device was not moved by the replay');

	# the same nonce with a higher nc is a new use (RFC 7616), from the device's own address
	my $auth = authorization(code => $d_udp, realm => $realm, password => pw($d_udp), nonce => $ch_a->{nonce},
		qop => 1, nc => '00000002');
	my $cid = rnd();
	sendraw($udp_a, request($udp_a, method => 'REGISTER', code => $d_udp, callid => $cid, cseq => 3,
		extra => $auth . "Expires: 3600\r\n"));
	is(answer_to($udp_a, $cid)->{status}, '200', 'the device reuses its nonce with nc 2: accepted');
	sendraw($udp_a, request($udp_a, method => 'REGISTER', code => $d_udp, callid => $cid, cseq => 4,
		extra => $auth . "Expires: 3600\r\n"));
	is(answer_to($udp_a, $cid)->{status}, '401', 'nc 2 again: a replay');

	($r) = register($udp_a, $d_udp, digest_uri => "sip:$server_id\@10.0.0.1");
	is($r->{status}, '403', 'a digest uri that is not the Request-URI is refused');
	($r) = register($udp_a, $d_udp, qop => 0);
	is($r->{status}, '403', 'a digest without qop is refused where qop is offered');
	($r) = register($udp_a, $d_udp);
	is($r->{status}, '200', 'the device registers again');
}
{
	# a device that cannot do qop: a per-device setting, each nonce once
	sql("SELECT vms.sip_set_digest_qop('$d_noqop', false)");
	my $c = client('UDP');
	my ($r, $msg, $ch) = register($c, $d_noqop);
	is($r->{status}, '200', 'digest_qop off: the device registers without qop');
	ok(!defined $ch->{qop}, 'and its challenge offers none');
	my ($callid) = $msg =~ /^Call-ID: (\S+)/m;
	sendraw($c, $msg);
	is(answer_to($c, $callid)->{status}, '401', 'digest_qop off: the captured REGISTER replayed is challenged');
}

###########################################################################
# credentials under the running worker
###########################################################################
{
	my $c = client('UDP');
	($r) = register($c, $d_cred);
	is($r->{status}, '200', 'credentials: the device registers with its password');
	sql("SELECT vms.device_set_password('$d_cred', 'changed', '$realm')");
	($r) = register($c, $d_cred);
	is($r->{status}, '403', 'after a password change the old password is refused at once');
	($r) = register($c, $d_cred, password => 'changed');
	is($r->{status}, '200', 'and the new one accepted');
	sql("DELETE FROM vms.device_credential WHERE device_code = '$d_cred'");
	($r) = register($c, $d_cred, password => 'changed');
	is($r->{status}, '403', 'a deleted credential stops authenticating without a worker restart');

	my $g = client('UDP');
	($r) = register($g, $d_gone);
	is($r->{status}, '200', 'a device registers');
	sql("DELETE FROM vms.device WHERE code = '$d_gone'");
	is(keepalive($g, $d_gone)->{status}, '403', 'once deleted from the ledger its keepalives are refused');
	($r) = register($g, $d_gone);
	is($r->{status}, '403', 'and so is its REGISTER');

	# a change that commits after a later-started one is never skipped
	my $s1 = $node->background_psql('postgres');
	$s1->query_safe('BEGIN');
	$s1->query_safe("SELECT vms.device_set_password('$d_first', 'first-new', '$realm')");
	sql("SELECT vms.device_set_password('$d_second', 'second-new', '$realm')");
	my $c2 = client('UDP');
	($r) = register($c2, $d_second, password => 'second-new');
	is($r->{status}, '200', 'a password change committed first is in force');
	$s1->query_safe('COMMIT');
	$s1->quit;
	($r) = register($c2, $d_first, password => 'first-new');
	is($r->{status}, '200', 'the change begun earlier and committed later is in force too');
}

###########################################################################
# a device speaks only for its own channels and catalogue nodes
###########################################################################
sub catalog_body
{
	my ($root, $code, $sn, @items) = @_;
	my $n = scalar @items;
	return "<?xml version=\"1.0\"?>\r\n<$root>\r\n<CmdType>Catalog</CmdType>\r\n<SN>$sn</SN>\r\n<DeviceID>$code</DeviceID>\r\n"
	  . "<SumNum>$n</SumNum>\r\n<DeviceList Num=\"$n\">\r\n"
	  . join('', map { "<Item>\r\n$_</Item>\r\n" } @items) . "</DeviceList>\r\n</$root>\r\n";
}
{
	my ($cam, $cam2, $grp, $grp2) = ('34020000001310000701', '34020000001310000702', '34020000002150000701', '34020000002150000702');
	my $co = client('UDP');
	my $cx = client('UDP');
	($r) = register($co, $d_owner);
	is($r->{status}, '200', 'ownership: a device registers');
	($r) = register($cx, $d_other);
	is($r->{status}, '200', 'ownership: a second device registers');
	$r = ask($co, method => 'NOTIFY', code => $d_owner, extra => "Event: Catalog\r\n",
		body => catalog_body('Notify', $d_owner, 1,
			"<DeviceID>$grp</DeviceID>\r\n<Name>owner group</Name>\r\n<Event>ADD</Event>\r\n",
			"<DeviceID>$cam</DeviceID>\r\n<Name>owner gate</Name>\r\n<Address>gate road 1</Address>\r\n<CivilCode>340201</CivilCode>\r\n"
			  . "<Longitude>120.1</Longitude>\r\n<Latitude>30.2</Latitude>\r\n<Status>ON</Status>\r\n"
			  . "<BusinessGroupID>$grp</BusinessGroupID>\r\n<Event>ADD</Event>\r\n"));
	is($r->{status}, '200', 'ownership: the first device reports its channel and business group');
	wait_ok($node, "SELECT count(*) = 1 FROM vms.catalog_member WHERE channel_code = '$cam'",
		'and they land');
	my $before = sql("SELECT c.device_code || '|' || c.name || '|' || c.address || '|' || c.civil_code || '|' || ST_AsText(c.geom)
	                    || '|' || s.status || '|' || n.name
	                    FROM vms.channel c JOIN vms.channel_status s USING (code), vms.catalog_node n
	                   WHERE c.code = '$cam' AND n.code = '$grp'");
	is($before, "$d_owner|owner gate|gate road 1|340201|POINT(120.1 30.2)|ON|owner group", 'as the first device reported them');

	# the second device, with its own credentials and registration, reports the first one's channel and group
	$r = ask($cx, method => 'NOTIFY', code => $d_other, extra => "Event: Catalog\r\n",
		body => catalog_body('Notify', $d_other, 2,
			"<DeviceID>$grp</DeviceID>\r\n<Name>hijacked group</Name>\r\n<Event>UPDATE</Event>\r\n",
			"<DeviceID>$grp2</DeviceID>\r\n<Name>other group</Name>\r\n<Event>ADD</Event>\r\n",
			"<DeviceID>$cam</DeviceID>\r\n<Name>hijacked</Name>\r\n<Address>elsewhere</Address>\r\n<CivilCode>110000</CivilCode>\r\n"
			  . "<Longitude>116.4</Longitude>\r\n<Latitude>39.9</Latitude>\r\n<Status>OFF</Status>\r\n"
			  . "<BusinessGroupID>$grp2</BusinessGroupID>\r\n<Event>UPDATE</Event>\r\n",
			"<DeviceID>$cam</DeviceID>\r\n<Event>VLOST</Event>\r\n",
			"<DeviceID>$cam2</DeviceID>\r\n<Name>other gate</Name>\r\n<BusinessGroupID>$grp</BusinessGroupID>\r\n<Event>ADD</Event>\r\n"));
	is($r->{status}, '200', 'ownership: the second device\'s catalog NOTIFY naming the first one\'s channel is taken');
	wait_ok($node, "SELECT count(*) = 1 FROM vms.channel WHERE code = '$cam2'",
		'its own channel in the same NOTIFY lands');
	is(sql("SELECT c.device_code || '|' || c.name || '|' || c.address || '|' || c.civil_code || '|' || ST_AsText(c.geom)
	          || '|' || s.status || '|' || n.name
	          FROM vms.channel c JOIN vms.channel_status s USING (code), vms.catalog_node n
	         WHERE c.code = '$cam' AND n.code = '$grp'"), $before,
		'the first device\'s channel and group are unchanged: name, address, civil code, location, status');
	is(sql("SELECT string_agg(node_code || '>' || channel_code, ',' ORDER BY node_code, channel_code) FROM vms.catalog_member
	         WHERE channel_code IN ('$cam', '$cam2')"), "$grp>$cam",
		'no channel joined another device\'s group, none was added to the other\'s');
	is(sql("SELECT count(*) FROM vms.alarm WHERE source = 'sip' AND code = '$cam'"), '0', 'no alarm raised on the other device\'s channel');
	is(sql("SELECT device_code FROM vms.channel WHERE code = '$cam2'"), $d_other, 'the second device owns its new channel');

	# an alarm naming the other device's channel is the reporter's own
	$r = ask($cx, method => 'MESSAGE', code => $d_other,
		body => "<?xml version=\"1.0\"?>\r\n<Notify>\r\n<CmdType>Alarm</CmdType>\r\n<SN>3</SN>\r\n<DeviceID>$cam</DeviceID>\r\n"
		  . "<AlarmPriority>1</AlarmPriority>\r\n<AlarmMethod>2</AlarmMethod>\r\n<Info>\r\n<AlarmType>1</AlarmType>\r\n</Info>\r\n</Notify>\r\n");
	is($r->{status}, '200', 'an alarm naming the other device\'s channel is taken');
	wait_ok($node, "SELECT count(*) = 1 FROM vms.alarm WHERE source = 'sip' AND detail ->> 'reporter' = '$d_other'",
		'and lands');
	is(sql("SELECT code FROM vms.alarm WHERE source = 'sip' AND detail ->> 'reporter' = '$d_other'"), $d_other,
		'against the reporting device, not the other device\'s channel');

	# a catalog query answered with the other device's channel: reported in the request's result
	my $rid = sql("SELECT vms.sip_query_catalog('$d_other')");
	my $query = recv_msg($cx);
	ok($query && ($query->{method} // '') eq 'MESSAGE' && $query->{body} =~ /<CmdType>Catalog<\/CmdType>/,
		'the catalog query reaches the second device');
	my ($sn) = ($query->{body} // '') =~ /<SN>(\d+)<\/SN>/;
	(my $ok = $query->{raw}) =~ s/\A[^\r\n]*\r\n/SIP\/2.0 200 OK\r\n/;
	$ok =~ s/\r\n\r\n.*\z/\r\n\r\n/s;
	$ok =~ s/^Content-Length:.*$/Content-Length: 0\r/m;
	$ok =~ s/^Content-Type:.*\r\n//m;
	sendraw($cx, $ok);
	$r = ask($cx, method => 'MESSAGE', code => $d_other,
		body => catalog_body('Response', $d_other, $sn,
			"<DeviceID>$cam</DeviceID>\r\n<Name>hijacked again</Name>\r\n<CivilCode>110000</CivilCode>\r\n<Status>OFF</Status>\r\n",
			"<DeviceID>$cam2</DeviceID>\r\n<Name>other gate 2</Name>\r\n<Status>ON</Status>\r\n"));
	is($r->{status}, '200', 'the second device answers with both channels');
	is(sql("SELECT state || '|' || (result ->> 'channels') || '|' || (result ->> 'foreign') || '|' || (result -> 'rejected' -> 0 ->> 'code')
	          FROM vms.sip_request_wait($rid, 60)"), "done|1|1|$cam",
		'the answer lands its own channel and reports the other device\'s as foreign in the request result');
	is(sql("SELECT name || '|' || civil_code FROM vms.channel WHERE code = '$cam'"), 'owner gate|340201',
		'the other device\'s channel is still unchanged');
	is(sql("SELECT name FROM vms.channel WHERE code = '$cam2'"), 'other gate 2', 'while its own is updated');

	# the owner still updates its own
	$r = ask($co, method => 'NOTIFY', code => $d_owner, extra => "Event: Catalog\r\n",
		body => catalog_body('Notify', $d_owner, 4, "<DeviceID>$cam</DeviceID>\r\n<Name>owner gate 2</Name>\r\n<Event>UPDATE</Event>\r\n"));
	wait_ok($node, "SELECT name = 'owner gate 2' FROM vms.channel WHERE code = '$cam'",
		'the owning device still renames its channel');
}

###########################################################################
# failures and bans: per device and source address, only after a valid nonce
###########################################################################
{
	my $attacker = client('UDP', '127.0.0.2');
	my $fail0 = counter('auth_failures');
	# answers to no nonce of ours (made up, wrong realm, wrong user): challenged again, counted nowhere
	my $challenged = 0;
	for my $i (1 .. 110)
	{
		my $auth = "Authorization: Digest username=\"$d_ban\", realm=\"elsewhere\", nonce=\"" . ('0' x 48)
		  . "\", uri=\"$ruri\", algorithm=MD5, response=\"" . ('0' x 32) . "\"\r\n";
		$challenged++ if ask($attacker, method => 'REGISTER', code => $d_ban, extra => $auth . "Expires: 3600\r\n")->{status} eq '401';
	}
	is($challenged, 110, 'bans: 110 REGISTERs with a made-up nonce (wrong realm) from another address are all challenged again');
	barrier();
	is(counter('auth_failures'), $fail0, 'and none is counted as an authentication failure');
	# wrong passwords to valid nonces from the attacker's address: counted, and that address banned
	my $refused = 0;
	for my $i (1 .. 100)
	{
		my ($r) = register($attacker, $d_ban, password => 'guess');
		$refused++ if $r->{status} eq '403';
		# let each batch of events reach the database (vms.sip_max_batch is small here)
		barrier() if $i % 20 == 0;
	}
	is($refused, 100, 'bans: 100 wrong passwords from another address are refused');
	($r) = register($attacker, $d_ban);
	is($r->{status}, '403', 'bans: that address is now refused even with the right password');
	is($r->{reason}, 'Forbidden (banned)', 'as banned');
	($r) = register(client('UDP'), $d_ban);
	is($r->{status}, '200', 'bans: the device registering from its own address is not locked out');
	wait_ok($node, "SELECT count(*) = 1 FROM vms.device_event WHERE device_code = '$d_ban' AND event = 'banned'",
		'one banned event');
	ok(counter_reaches('auth_failures', $fail0 + 101), 'the 100 failures and the refused banned address are counted');
	barrier();
	is(counter('auth_failures'), $fail0 + 101, 'and nothing else');
	is(sql("SELECT count(*) FILTER (WHERE cause LIKE 'wrong password (from 127.0.0.2:%') || '|' || count(*)
	          FROM vms.device_event WHERE device_code = '$d_ban' AND event = 'auth_failed'"), '100|100',
		'the auth_failed events are the 100 wrong passwords from the attacker\'s address');
	like(sql("SELECT cause FROM vms.device_event WHERE device_code = '$d_ban' AND event = 'banned'"), qr/from 127\.0\.0\.2$/,
		'the ban names the address');
}

###########################################################################
# 401 challenges are rate-limited per source address (no reflection)
###########################################################################
{
	my $c = client('UDP', '127.0.0.3');
	my $lim0 = counter('challenges_limited');
	my ($sent, $challenged) = (0, 0);
	for my $group (1 .. 20)
	{
		for (1 .. 50)
		{
			sendraw($c, request($c, method => 'REGISTER', code => $d_ban, callid => rnd(), extra => "Expires: 3600\r\n"));
			$sent++;
		}
		# the OPTIONS answer comes after the answers to every REGISTER sent before it
		my $fence = rnd();
		sendraw($c, request($c, method => 'OPTIONS', code => $d_ban, callid => $fence));
		while (my $m = recv_msg($c))
		{
			last if defined $m->{status} && $m->{callid} eq $fence;
			$challenged++ if ($m->{status} // '') eq '401';
		}
	}
	cmp_ok($challenged, '<', 1000, "challenges: of 1000 unauthenticated REGISTERs from one address in a burst, $challenged are challenged");
	cmp_ok($challenged, '>=', 400, 'at least the burst allowance of 400');
	ok(counter_reaches('challenges_limited', $lim0 + $sent - $challenged), 'the others are counted (challenges_limited)');
	($r) = register(client('UDP'), $d_owner);
	is($r->{status}, '200', 'challenges: a device at another address is still challenged and registers');
}

###########################################################################
# a credential changed or deleted ends the live session
###########################################################################
{
	my $c = client('UDP');
	($r) = register($c, $d_rekey);
	is($r->{status}, '200', 're-key: the device registers');
	is(keepalive($c, $d_rekey)->{status}, '200', 'and keeps alive');
	sql("SELECT vms.device_set_password('$d_rekey', 'rekeyed', '$realm')");
	is(keepalive($c, $d_rekey)->{status}, '403', 're-key: after a password change its keepalives are refused at once');
	$r = ask($c, method => 'MESSAGE', code => $d_rekey,
		body => "<?xml version=\"1.0\"?>\r\n<Notify>\r\n<CmdType>Alarm</CmdType>\r\n<SN>5</SN>\r\n<DeviceID>$d_rekey</DeviceID>\r\n"
		  . "<AlarmPriority>1</AlarmPriority>\r\n<AlarmMethod>2</AlarmMethod>\r\n</Notify>\r\n");
	is($r->{status}, '403', 'and so are its alarms');
	wait_ok($node, "SELECT count(*) = 1 FROM vms.device_event WHERE device_code = '$d_rekey'
	    AND event = 'unregistered' AND cause LIKE 'credential changed%'", 'an unregistered event says why');
	wait_ok($node, "SELECT NOT online FROM vms.device WHERE code = '$d_rekey'", 'and the device is offline');
	($r) = register($c, $d_rekey, password => 'rekeyed');
	is($r->{status}, '200', 're-key: it registers with the new password');
	is(keepalive($c, $d_rekey)->{status}, '200', 'and keeps alive again');
	sql("DELETE FROM vms.device_credential WHERE device_code = '$d_rekey'");
	is(keepalive($c, $d_rekey)->{status}, '403', 're-key: once its credential is deleted its keepalives are refused at once');
	wait_ok($node, "SELECT count(*) = 1 FROM vms.device_event WHERE device_code = '$d_rekey'
	    AND event = 'unregistered' AND cause LIKE 'credential deleted%'", 'an unregistered event says why');
	is(sql("SELECT count(*) FROM vms.alarm WHERE source = 'sip' AND detail ->> 'reporter' = '$d_rekey'"), '0', 'no alarm of the re-keyed device was taken');
}

###########################################################################
# text from devices
###########################################################################
{
	my $c = client('UDP');
	# this file is UTF-8 bytes: the text is decoded, then encoded as GBK
	my $gbk = encode('gbk', decode('UTF-8', "海康威视 DS-2CD"));
	($r) = register($c, $d_gbk, ua => $gbk);
	is($r->{status}, '200', 'a device with a GBK User-Agent registers');
	wait_ok($node, "SELECT user_agent = '海康威视 DS-2CD' FROM vms.device_session WHERE device_code = '$d_gbk'",
		'its User-Agent is stored converted to UTF-8');
	my $long = '摄像机' x 20;
	($r) = register($c, $d_gbk, ua => $long);
	is($r->{status}, '200', 'a long UTF-8 User-Agent');
	wait_ok($node, "SELECT user_agent <> '海康威视 DS-2CD' FROM vms.device_session WHERE device_code = '$d_gbk'",
		'is stored');
	is(sql("SELECT octet_length(user_agent) <= 63 AND strpos('$long', user_agent) = 1 AND user_agent ~ '^(摄像机)*摄?像?\$'
		    FROM vms.device_session WHERE device_code = '$d_gbk'"), 't', 'cut at a character boundary');
	($r) = register($c, $d_gbk, ua => "\xff\xfe\xfd bad");
	is($r->{status}, '200', 'a User-Agent that is neither UTF-8 nor GB18030 does not stop the registration');
	barrier();
	like(sql("SELECT user_agent FROM vms.device_session WHERE device_code = '$d_gbk'"), qr/^摄像机/, 'and is left out');
}

###########################################################################
# memory: an error in one message, a flood of names, a full batch
###########################################################################
{
	# the device lookup fails for one code: that message gets a 500, the next on the connection its answer
	my $def = sql("SELECT pg_get_functiondef('vms._sip_devices(timestamptz, text)'::regprocedure)");
	(my $failing = $def) =~ s/\$function\$\n/\$function\$\n    SELECT * FROM vms._sip_test_fail(one_code) UNION ALL\n/;
	my $broken = '34020000001320000999';
	sql("CREATE FUNCTION vms._sip_test_fail(c text) RETURNS TABLE (code text, realm text, ha1_md5 text, ha1_sha256 text, online boolean,
	       registered_at float8, expires_at float8, last_keepalive_at float8, keepalive_interval integer, keepalive_count integer,
	       transport text, address text, port integer, auth_failures integer, banned_until float8, credential_at timestamptz,
	       digest_qop boolean)
	   LANGUAGE plpgsql AS \$\$ BEGIN IF c = '$broken' THEN RAISE EXCEPTION 'test: lookup fails'; END IF; END \$\$");
	sql($failing);
	my $c = client('TCP');
	my ($a, $b) = (rnd(), rnd());
	my $err0 = counter('handler_errors');
	sendraw($c, request($c, method => 'MESSAGE', code => $broken, callid => $a, body => keepalive_body($broken))
		  . request($c, method => 'OPTIONS', code => $d_udp, callid => $b));
	is(answer_to($c, $a)->{status}, '500', 'a message whose handling fails is answered 500');
	is(answer_to($c, $b)->{status}, '200', 'the next message on the connection is handled');
	ok(counter_reaches('handler_errors', $err0 + 1), 'the failure is counted (handler_errors)');
	sql($def);
	sql("DROP FUNCTION vms._sip_test_fail(text)");
	is(keepalive($udp_a, $d_udp)->{status}, '200', 'the worker carries on');
}
{
	# bodies full of made-up element names would fill libxml2's name dictionary (10 MB):
	# 40 messages of about 1 MB over TCP from a registered device
	my $bad = 0;
	for my $doc (1 .. 40)
	{
		my $names = join('', map { sprintf('<n%05d_%05d_padpadpadpadpadpad/>', $doc, $_) } 1 .. 30000);
		my $st = ask($tcp1, method => 'MESSAGE', code => $d_tcp,
			body => "<?xml version=\"1.0\"?><Notify><CmdType>Junk</CmdType><SN>$doc</SN><X>$names</X></Notify>")->{status};
		$bad++ if $st ne '200';
	}
	is($bad, 0, '40 bodies with 1.2 million distinct element names are all parsed');
	$r = ask($udp_a, method => 'NOTIFY', code => $d_udp, extra => "Event: Catalog\r\n",
		body => "<?xml version=\"1.0\"?>\r\n<Notify>\r\n<CmdType>Catalog</CmdType>\r\n<SN>9</SN>\r\n<DeviceID>$d_udp</DeviceID>\r\n"
		  . "<SumNum>1</SumNum>\r\n<DeviceList Num=\"1\">\r\n<Item>\r\n<DeviceID>34020000001310000001</DeviceID>\r\n"
		  . "<Name>gate</Name>\r\n<VendorFieldNeverSeen>x</VendorFieldNeverSeen>\r\n<Event>ADD</Event>\r\n</Item>\r\n</DeviceList>\r\n</Notify>\r\n");
	is($r->{status}, '200', 'a catalog NOTIFY with a name never seen before is still parsed afterwards');
	wait_ok($node, "SELECT count(*) = 1 FROM vms.channel WHERE code = '34020000001310000001'",
		'and its channel lands');
}
{
	# the database stops taking batches: events wait up to vms.sip_max_batch (16 kB here), then are dropped
	my $def = sql("SELECT pg_get_functiondef('vms._sip_flush(jsonb)'::regprocedure)");
	sql("CREATE OR REPLACE FUNCTION vms._sip_flush(batch jsonb) RETURNS integer LANGUAGE plpgsql AS \$\$
	   BEGIN RAISE EXCEPTION 'test: the database takes no batches'; END \$\$");
	my $drop0 = counter('batch_dropped');
	my $c = client('UDP');
	my $ok = 0;
	for my $i (100 .. 249) { my ($r) = register($c, dev($i)); $ok++ if $r->{status} eq '200'; }
	is($ok, 150, '150 devices register while no batch is written');
	ok(counter_reaches('batch_dropped', $drop0 + 1), 'events beyond vms.sip_max_batch are dropped and counted (batch_dropped)');
	sql($def);
	wait_ok($node, "SELECT count(*) = 150 FROM vms.device WHERE online AND $flood",
		'once batches are taken again every session and online flip lands');
	(my $flood_events = $flood) =~ s/^code/device_code/;
	my $events = sql("SELECT count(*) FROM vms.device_event WHERE $flood_events");
	ok($events > 0 && $events < 300, "what fit of the 300 events is written whole ($events)");
	($r) = register(client('UDP'), $d_spare);
	is($r->{status}, '200', 'a device registers afterwards');
	wait_ok($node, "SELECT count(*) = 1 FROM vms.device_event WHERE device_code = '$d_spare' AND event = 'registered'",
		'and its events are written again');
}

###########################################################################
# SSRC: built from a 10-digit realm only
###########################################################################
{
	sql("INSERT INTO vms.channel (code, device_code, name) VALUES ('34020000001310000002', '$d_tcp', 'lobby')");
	sql("ALTER SYSTEM SET vms.sip_realm = 'not-digits'");
	sql('SELECT pg_reload_conf()');
	my $c = client('UDP');
	my $seen = '';
	# the devices address the platform in the new domain (a 10-digit domain not ours is refused)
	for (1 .. 600)
	{
		my $m = ask($c, method => 'REGISTER', code => $d_tcp, dom => 'not-digits', extra => "Expires: 3600\r\n");
		my $ch = challenge_of($m);
		$seen = $ch ? $ch->{realm} : "answer $m->{status}";
		last if $seen eq 'not-digits';
	}
	is($seen, 'not-digits', 'the worker took the new realm');
	is(ask($tcp1, method => 'MESSAGE', code => $d_tcp, dom => 'not-digits', body => keepalive_body($d_tcp))->{status}, '200',
		'the TCP device is still registered');
	my $rid = sql("SELECT vms.sip_invite('34020000001310000002', '127.0.0.1', 30000)");
	like(sql("SELECT state || ': ' || error FROM vms.sip_request_wait($rid, 60)"), qr/^failed: .*not a 10-digit domain code/,
		'an INVITE fails with a clear error when the realm cannot give an SSRC');
}

done_testing();
