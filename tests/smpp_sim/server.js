#!/usr/bin/env node
// An SMSC simulator for broadcast's SMPP tests, on the npm `smpp` package's server (SMPP 3.4).
//
//   node server.js --port 0 --account sys:secret [--account other:pw] [--latency-ms 5]
//                  [--refuse 8613900000000,...] [--undeliverable 8613700000000,...]
//                  [--throttle-first K] [--throttle-rate R] [--log submits.jsonl]
//                  [--receipt-delay-ms 0] [--mo 8613800000000:text] [--host 127.0.0.1]
//
// * prints "listening PORT" on stdout once it accepts connections (--port 0: any free port);
// * binds (transceiver, transmitter, receiver): an unknown system_id is answered ESME_RBINDFAIL,
//   a known one with the wrong password ESME_RINVPASWD;
// * submit_sm: answered after --latency-ms; a destination in --refuse gets ESME_RINVDSTADR; the
//   first K submits (--throttle-first) and any submit over R in the last second (--throttle-rate)
//   get ESME_RTHROTTLED; every other one ESME_ROK with a fresh message_id, then a deliver_sm
//   receipt (esm_class 0x04, receipted_message_id + message_state TLVs, the id:/stat: text):
//   DELIVRD, or UNDELIV for a destination in --undeliverable;
// * every submit is appended to --log as one JSON line before it is answered:
//   {"destination", "source", "esm_class", "data_coding", "registered_delivery", "short_message" (hex),
//    "status" (the command_status answered), "message_id" ("" when refused), "system_id"};
// * enquire_link and unbind are answered; --mo sends one mobile-originated deliver_sm after each bind.
'use strict';

const fs = require('fs');
const smpp = require('smpp');
const defs = require('smpp/lib/defs');

// Keep short_message as the raw octets (the package would decode it to text and UDH objects).
for (const cmd of ['submit_sm', 'deliver_sm']) {
	delete defs.commands[cmd].params.short_message.filter;
}

function parseArgs(argv) {
	const opts = {
		host: '127.0.0.1', port: 2775, accounts: {}, latencyMs: 0, refuse: new Set(), undeliverable: new Set(),
		throttleFirst: 0, throttleRate: 0, log: null, receiptDelayMs: 0, mo: [],
	};
	const list = (v) => v.split(',').map((s) => s.trim()).filter(Boolean);
	for (let i = 2; i < argv.length; i++) {
		const flag = argv[i];
		const value = argv[++i];
		if (value === undefined) throw new Error(`${flag} needs a value`);
		switch (flag) {
			case '--host': opts.host = value; break;
			case '--port': opts.port = Number(value); break;
			case '--account': {
				const at = value.indexOf(':');
				if (at < 1) throw new Error('--account is system_id:password');
				opts.accounts[value.slice(0, at)] = value.slice(at + 1);
				break;
			}
			case '--latency-ms': opts.latencyMs = Number(value); break;
			case '--refuse': list(value).forEach((d) => opts.refuse.add(d)); break;
			case '--undeliverable': list(value).forEach((d) => opts.undeliverable.add(d)); break;
			case '--throttle-first': opts.throttleFirst = Number(value); break;
			case '--throttle-rate': opts.throttleRate = Number(value); break;
			case '--log': opts.log = value; break;
			case '--receipt-delay-ms': opts.receiptDelayMs = Number(value); break;
			case '--mo': opts.mo.push(value); break;
			default: throw new Error(`unknown flag ${flag}`);
		}
	}
	if (!Object.keys(opts.accounts).length) throw new Error('give at least one --account system_id:password');
	return opts;
}

const opts = parseArgs(process.argv);
let submits = 0;
let nextId = 0;
const recent = []; // submit times (ms) within the last second, for --throttle-rate

function log(entry) {
	if (opts.log) fs.appendFileSync(opts.log, JSON.stringify(entry) + '\n');
}

function verdict(pdu) {
	submits += 1;
	if (submits <= opts.throttleFirst) return smpp.ESME_RTHROTTLED;
	if (opts.throttleRate > 0) {
		const now = Date.now();
		while (recent.length && recent[0] <= now - 1000) recent.shift();
		if (recent.length >= opts.throttleRate) return smpp.ESME_RTHROTTLED;
		recent.push(now);
	}
	if (opts.refuse.has(pdu.destination_addr)) return smpp.ESME_RINVDSTADR;
	return smpp.ESME_ROK;
}

function stamp(d) {
	const p = (n) => String(n).padStart(2, '0');
	return p(d.getUTCFullYear() % 100) + p(d.getUTCMonth() + 1) + p(d.getUTCDate()) + p(d.getUTCHours()) + p(d.getUTCMinutes());
}

function receipt(session, pdu, messageId, submitted) {
	const failed = opts.undeliverable.has(pdu.destination_addr);
	const stat = failed ? 'UNDELIV' : 'DELIVRD';
	const text = `id:${messageId} sub:001 dlvrd:${failed ? '000' : '001'} submit date:${stamp(submitted)} ` +
		`done date:${stamp(new Date())} stat:${stat} err:${failed ? '001' : '000'} text:`;
	session.deliver_sm({
		source_addr_ton: pdu.dest_addr_ton, source_addr_npi: pdu.dest_addr_npi, source_addr: pdu.destination_addr,
		dest_addr_ton: pdu.source_addr_ton, dest_addr_npi: pdu.source_addr_npi, destination_addr: pdu.source_addr,
		esm_class: 0x04, data_coding: 0, short_message: Buffer.from(text, 'latin1'),
		receipted_message_id: messageId, message_state: failed ? 5 : 2,
	});
}

function mobileOriginated(session, spec) {
	const at = spec.indexOf(':');
	const text = spec.slice(at + 1);
	session.deliver_sm({
		source_addr_ton: 1, source_addr_npi: 1, source_addr: spec.slice(0, at),
		dest_addr_ton: 0, dest_addr_npi: 0, destination_addr: '10690000',
		esm_class: 0x00, data_coding: 8, short_message: Buffer.from(text, 'utf16le').swap16(),
	});
}

const server = smpp.createServer((session) => {
	let systemId = null;
	session.on('error', () => session.destroy());

	const bind = (pdu) => {
		const known = Object.prototype.hasOwnProperty.call(opts.accounts, pdu.system_id);
		let status = smpp.ESME_ROK;
		if (!known) status = smpp.ESME_RBINDFAIL;
		else if (opts.accounts[pdu.system_id] !== pdu.password) status = smpp.ESME_RINVPASWD;
		session.send(pdu.response({ command_status: status, system_id: 'SMSCSIM' }));
		if (status !== smpp.ESME_ROK) {
			setTimeout(() => session.close(), 50);
			return;
		}
		systemId = pdu.system_id;
		opts.mo.forEach((spec) => mobileOriginated(session, spec));
	};
	session.on('bind_transceiver', bind);
	session.on('bind_transmitter', bind);
	session.on('bind_receiver', bind);

	session.on('submit_sm', (pdu) => {
		if (systemId === null) {
			session.send(pdu.response({ command_status: smpp.ESME_RINVBNDSTS }));
			return;
		}
		const status = verdict(pdu);
		const messageId = status === smpp.ESME_ROK ? (++nextId).toString(16).padStart(8, '0') : '';
		const submitted = new Date();
		log({
			destination: pdu.destination_addr, source: pdu.source_addr, esm_class: pdu.esm_class,
			data_coding: pdu.data_coding, registered_delivery: pdu.registered_delivery,
			short_message: Buffer.from(pdu.short_message || []).toString('hex'), status, message_id: messageId,
			system_id: systemId,
		});
		setTimeout(() => {
			const resp = status === smpp.ESME_ROK
				? pdu.response({ message_id: messageId })
				: pdu.response({ command_status: status });
			session.send(resp);
			if (status === smpp.ESME_ROK && pdu.registered_delivery & 0x01) {
				setTimeout(() => receipt(session, pdu, messageId, submitted), opts.receiptDelayMs);
			}
		}, opts.latencyMs);
	});

	session.on('enquire_link', (pdu) => session.send(pdu.response()));
	session.on('unbind', (pdu) => {
		session.send(pdu.response());
		setTimeout(() => session.close(), 10);
	});
	session.on('unknown', (pdu) => session.send(pdu.response()));
});

server.on('error', (err) => {
	process.stderr.write(`smpp simulator: ${err.message}\n`);
	process.exit(2);
});
server.listen(opts.port, opts.host, () => {
	process.stdout.write(`listening ${server.address().port}\n`);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
