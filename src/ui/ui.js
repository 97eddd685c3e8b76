// The status page: reads this node's /status, /ready, /v1/peers and /metrics
// every second and draws them. No framework, no build step.
'use strict';

const $ = (id) => document.getElementById(id);
const HISTORY = 120; // samples kept per chart (two minutes)
const series = { writes: [], reads: [], latency: [] };
let previous = null;

// Prometheus text -> [{name, labels, value}]
function samples(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = line.match(/^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)/);
    if (!m) continue;
    const labels = {};
    for (const kv of (m[2] || '').matchAll(/(\w+)="([^"]*)"/g)) labels[kv[1]] = kv[2];
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

function sum(all, name, keep) {
  return all.filter((s) => s.name === name && (!keep || keep(s.labels)))
    .reduce((a, s) => a + s.value, 0);
}

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function fill(table, rows) {
  const body = table.tBodies[0] || table.createTBody();
  body.replaceChildren();
  for (const r of rows) {
    const tr = body.insertRow();
    for (const c of r) cell(tr, c[0], c[1]);
  }
}

function push(list, v) {
  list.push(v);
  if (list.length > HISTORY) list.shift();
}

// Draws each series as a line; records how many points it drew.
function chart(canvas, lines) {
  const ctx = canvas.getContext('2d');
  const { width: w, height: h } = canvas;
  ctx.clearRect(0, 0, w, h);
  const max = Math.max(1e-9, ...lines.flatMap((l) => l.values));
  ctx.fillStyle = '#888';
  ctx.fillText(max.toPrecision(3), 4, 12);
  let points = 0;
  for (const { values, color } of lines) {
    ctx.strokeStyle = color;
    ctx.beginPath();
    values.forEach((v, i) => {
      const x = (i / (HISTORY - 1)) * w;
      const y = h - (v / max) * (h - 16);
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
    points = Math.max(points, values.length);
  }
  canvas.dataset.points = String(points);
  canvas.dataset.max = String(max);
}

async function tick() {
  try {
    const [status, ready, peers, text] = await Promise.all([
      fetch('/status').then((r) => r.json()),
      fetch('/ready').then((r) => r.json()),
      fetch('/v1/peers').then((r) => r.json()),
      fetch('/metrics').then((r) => r.text()),
    ]);
    $('error').textContent = '';
    $('version').textContent = status.version;
    $('node').textContent = `${status.peerId} · up ${status.uptimeSeconds} s · ${status.storage.backend} storage, `
      + `${status.blockCount} blocks, ${status.storage.sizeBytes} bytes · cluster size ${status.clusterSize} · `
      + (status.listenAddrs || []).join(' ');

    const readyRows = [['ready', ready.ready ? 'yes' : 'no', ready.ready ? 'ok' : 'bad']];
    for (const k of ['storage', 'network', 'quorum']) {
      readyRows.push([k, ready[k].detail, ready[k].ok ? 'ok' : 'bad']);
    }
    fill($('ready'), readyRows.map(([a, b, c]) => [[a], [b, c]]));

    // Every peer of a configuration, and every connected one.
    const connected = new Set(status.connectedPeers || []);
    const rows = new Map();
    for (const p of peers.peers || []) {
      const state = p.retired ? 'retired' : (connected.has(p.peerId) ? 'connected' : 'not connected');
      rows.set(p.peerId, [[p.peerId, 'mono peer'], [state, state === 'connected' ? 'ok' : 'bad'],
        [String(p.regions)], [(p.addrs || []).join(' '), 'mono']]);
    }
    for (const id of connected) {
      if (!rows.has(id)) rows.set(id, [[id, 'mono peer'], ['connected (client)', 'ok'], ['0'], ['']]);
    }
    fill($('peers'), [...rows.values()]);

    const all = samples(text);
    const byActor = (name) => Object.fromEntries(all.filter((s) => s.name === name)
      .map((s) => [s.labels.actor, s.value]));
    const depth = byActor('optimystic_actor_mailbox_depth');
    const high = byActor('optimystic_actor_mailbox_high_water');
    const handled = byActor('optimystic_actor_messages_handled_total');
    fill($('mailboxes'), Object.keys(depth).sort((a, b) => depth[b] - depth[a] || a.localeCompare(b))
      .map((a) => [[a], [String(depth[a])], [String(high[a] || 0)], [String(handled[a] || 0)]]));

    const changes = (o) => sum(all, 'optimystic_config_changes_total', (l) => l.outcome === o);
    fill($('replication'), [
      [['configuration changes'], [`${changes('committed')} committed, ${changes('aborted')} aborted, ${changes('in_doubt')} in doubt`]],
      [['anti-entropy'], [`${sum(all, 'optimystic_antientropy_rounds_total')} rounds, `
        + `${sum(all, 'optimystic_antientropy_regions_differing_total')} regions found differing, `
        + `${sum(all, 'optimystic_repair_blocks_total')} blocks repaired`]],
      [['hand-off'], [`${sum(all, 'optimystic_handoff_blocks_total')} copies handed off`]],
      [['transactions'], [['committed', 'aborted', 'in_doubt', 'expired']
        .map((o) => `${sum(all, 'optimystic_transactions_total', (l) => l.outcome === o)} ${o}`).join(', ')]],
    ]);

    const now = {
      t: performance.now() / 1000,
      writes: sum(all, 'optimystic_repo_requests_total', (l) => l.op !== 'get' && l.outcome === 'success'),
      reads: sum(all, 'optimystic_repo_requests_total', (l) => l.op === 'get' && l.outcome === 'success'),
      latSum: sum(all, 'optimystic_actor_handler_latency_seconds_sum', (l) => l.actor === 'block'),
      latCount: sum(all, 'optimystic_actor_handler_latency_seconds_count', (l) => l.actor === 'block'),
    };
    if (previous) {
      const dt = Math.max(1e-3, now.t - previous.t);
      const writes = (now.writes - previous.writes) / dt;
      const reads = (now.reads - previous.reads) / dt;
      const n = now.latCount - previous.latCount;
      const latency = n > 0 ? (now.latSum - previous.latSum) / n : 0;
      push(series.writes, writes);
      push(series.reads, reads);
      push(series.latency, latency * 1e3);
      $('throughput-now').textContent = `${writes.toFixed(0)} writes/s, ${reads.toFixed(0)} reads/s`;
      $('latency-now').textContent = `${(latency * 1e3).toFixed(2)} ms`;
      chart($('throughput'), [{ values: series.writes, color: '#1565c0' }, { values: series.reads, color: '#2e7d32' }]);
      chart($('latency'), [{ values: series.latency, color: '#ad1457' }]);
    }
    previous = now;
  } catch (e) {
    $('error').textContent = `cannot read this node: ${e}`;
  }
  setTimeout(tick, 1000);
}

tick();
