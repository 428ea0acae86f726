// The report's behaviour: header, tabs, findings, and per profile an interactive flame graph
// (zoom, search, hover) and a sortable table. Plain DOM, no libraries: the page must work
// offline from a single file.
(function () {
  'use strict';

  const DATA = JSON.parse(document.getElementById('report-data').textContent);
  /** Pixels per flame-graph row; matches --row in the CSS. */
  const ROW = 18;
  /** Frames narrower than this many pixels are not drawn (nor are their callees). */
  const MIN_PX = 0.5;
  /** Rows of a function table shown before "show all". */
  const TABLE_ROWS = 100;

  // ---------------------------------------------------------------------------------------
  // Small helpers

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function group(n) {
    return Math.round(n).toLocaleString('en-US');
  }

  function humanTime(ns) {
    const a = Math.abs(ns);
    if (a >= 1e9) return (ns / 1e9).toFixed(2) + ' s';
    if (a >= 1e6) return (ns / 1e6).toFixed(1) + ' ms';
    return (ns / 1e3).toFixed(1) + ' µs';
  }

  function humanBytes(b) {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let v = b;
    let u = 0;
    while (Math.abs(v) >= 1024 && u < units.length - 1) {
      v /= 1024;
      u++;
    }
    return u === 0 ? v.toFixed(0) + ' B' : v.toFixed(1) + ' ' + units[u];
  }

  /** A value in its unit, as the terminal summary writes it. */
  function fmt(value, unit) {
    if (unit === 'nanoseconds') return humanTime(value);
    if (unit === 'bytes') return humanBytes(value);
    return group(value);
  }

  function pct(value, total) {
    return total > 0 ? (100 * value / total).toFixed(1) + '%' : '–';
  }

  /** A stable number in [0, 1) from a string, so a function keeps its color. */
  function hash(s) {
    let h = 2166136261;
    for (let i = 0; i < s.length; i++) {
      h ^= s.charCodeAt(i);
      h = Math.imul(h, 16777619);
    }
    return ((h >>> 0) % 1000) / 1000;
  }

  /** Frame colors per profile: warm for CPU, blue for I/O, violet for blocking. */
  const PALETTES = {
    cpu: { user: [0, 55], kernel: [185, 200] },
    io: { user: [190, 225], kernel: [95, 135] },
    block: { user: [255, 290], kernel: [165, 185] },
    offcpu: { user: [170, 195], kernel: [205, 220] },
  };

  function color(profile, name, flags) {
    if (flags & 2) return 'hsl(220, 8%, 78%)';
    const palette = PALETTES[profile] || PALETTES.cpu;
    const [lo, hi] = flags & 1 ? palette.kernel : palette.user;
    const h = hash(name);
    const hue = lo + (hi - lo) * h;
    return `hsl(${hue.toFixed(0)}, ${(62 + 20 * h).toFixed(0)}%, ${(62 + 10 * (1 - h)).toFixed(0)}%)`;
  }

  function escapeRegExp(s) {
    return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  }

  /** A search pattern: a regular expression if it is one, else the literal text. */
  function matcher(text) {
    if (!text) return null;
    try {
      return new RegExp(text, 'i');
    } catch (_) {
      return new RegExp(escapeRegExp(text), 'i');
    }
  }

  /** A pattern matching exactly the given names. */
  function exactly(names) {
    return '^(?:' + names.map(escapeRegExp).join('|') + ')$';
  }

  const tooltip = document.getElementById('tooltip');

  function showTooltip(event, content) {
    tooltip.replaceChildren(...content);
    tooltip.hidden = false;
    const pad = 14;
    const w = tooltip.offsetWidth;
    const h = tooltip.offsetHeight;
    let x = event.clientX + pad;
    let y = event.clientY + pad;
    if (x + w > window.innerWidth) x = Math.max(0, event.clientX - w - pad);
    if (y + h > window.innerHeight) y = Math.max(0, event.clientY - h - pad);
    tooltip.style.left = x + 'px';
    tooltip.style.top = y + 'px';
  }

  function hideTooltip() {
    tooltip.hidden = true;
  }

  // ---------------------------------------------------------------------------------------
  // Header: the run's facts and, per profile, what was received and lost

  function renderHeader() {
    const run = DATA.run;
    const facts = [
      ['host', run.host],
      ['kernel', run.kernel],
      ['CPUs', run.cpus],
      ['target', run.target],
      ['window', run.window],
      ['from', run.started],
      ['ended', run.ended],
      ['data', run.source],
    ].filter(([, v]) => v !== null && v !== undefined && v !== '');
    const header = document.getElementById('header');
    header.append(
      el('h1', { text: 'Profile report' }),
      el('div', { class: 'facts', id: 'run-facts' },
        ...facts.map(([k, v]) => el('span', { 'data-fact': k }, k + ': ', el('b', { text: String(v) })))),
      el('div', { class: 'cards' }, ...DATA.profiles.map(profileCard)),
    );
  }

  function profileCard(p) {
    const t = p.types[p.default];
    const headline = [fmt(p.totals[p.default], t.unit) + ' ' + t.kind];
    if (p.frequency) headline.push(p.frequency + ' Hz');
    headline.push((p.duration_ns / 1e9).toFixed(2) + ' s');
    // The run line is in the facts above; the rest say what was received and lost.
    const comments = p.comments.filter((c) => !c.startsWith('run: '));
    return el('section', { class: 'card', 'data-profile': p.name },
      el('h2', { text: p.title }),
      el('div', { class: 'headline', text: headline.join(' · ') }),
      el('ul', {}, ...comments.map((c) => el('li', { text: c }))));
  }

  // ---------------------------------------------------------------------------------------
  // Tabs

  const panels = document.getElementById('panels');
  const tabBar = document.getElementById('tabs');
  const views = {};

  function addTab(id, title, badge) {
    const button = el('button', {
      role: 'tab', id: 'tab-' + id, 'data-tab': id, 'aria-controls': 'panel-' + id,
      onclick: () => showTab(id),
    }, title);
    if (badge !== undefined) button.append(el('span', { class: 'badge' + (badge === 0 ? ' zero' : ''), text: String(badge) }));
    tabBar.append(button);
    const panel = el('section', { class: 'panel', id: 'panel-' + id, role: 'tabpanel', 'aria-labelledby': 'tab-' + id, hidden: true });
    panels.append(panel);
    return panel;
  }

  function showTab(id) {
    for (const b of tabBar.querySelectorAll('button')) b.setAttribute('aria-selected', String(b.dataset.tab === id));
    for (const p of panels.children) p.hidden = p.id !== 'panel-' + id;
    document.body.dataset.tab = id;
    if (location.hash !== '#' + id) history.replaceState(null, '', '#' + id);
    // A graph laid out while hidden had no width: draw it now that it has one.
    if (views[id]) views[id].render();
  }

  // ---------------------------------------------------------------------------------------
  // Findings

  const KIND_NAMES = {
    'small-io': 'small I/O',
    contention: 'lock contention',
    allocation: 'allocation',
    gc: 'garbage collection',
    'off-cpu': 'off CPU',
    'unnamed-jit': 'unnamed JIT code',
  };

  function renderFindings(panel) {
    const list = el('div', { id: 'findings' });
    if (DATA.findings.length === 0) {
      list.append(el('p', { class: 'none', text: 'No findings: nothing crossed the thresholds below.' }));
    }
    for (const f of DATA.findings) {
      const view = views[f.profile];
      const title = view ? view.profile.title : f.profile;
      list.append(el('article', { class: 'finding', 'data-kind': f.kind, 'data-profile': f.profile },
        el('div', {}, el('span', { class: 'kind', text: KIND_NAMES[f.kind] || f.kind }), el('span', { class: 'title', text: f.title })),
        el('div', { class: 'details' }, ...f.details.map((d) => el('div', { text: d }))),
        el('div', { class: 'hint', text: f.hint }),
        view ? el('button', { class: 'show', onclick: () => view.focus(f) }, 'Show in the ' + title + ' flame graph →') : null));
    }
    for (const more of DATA.findings_omitted) list.append(el('p', { class: 'none', text: 'And ' + more + '.' }));
    panel.append(list,
      el('h3', { text: 'What counts as a finding' }),
      el('ul', { class: 'thresholds' }, ...DATA.thresholds.map((t) => el('li', { text: t }))));
  }

  // ---------------------------------------------------------------------------------------
  // A profile: flame graph and function table

  class ProfileView {
    constructor(profile, panel) {
      this.profile = profile;
      this.panel = panel;
      this.type = profile.default;
      this.nodes = this.flatten(profile.tree);
      this.root = this.nodes[0];
      this.zoomed = this.root;
      this.pattern = null;
      this.sort = { column: 'self', type: profile.default, asc: false };
      this.showAll = false;
      this.build();
    }

    /** The flat [name, file, line, flags, values, parent, why] arrays (pre-order, each
     *  after its parent) as linked objects. */
    flatten(tree) {
      const s = this.profile.strings;
      const nodes = [];
      for (const t of tree) {
        const parent = nodes.length ? nodes[t[5]] : null;
        const node = {
          id: nodes.length, name: s[t[0]], file: t[1] ? s[t[1]] : '', line: t[2], flags: t[3],
          why: t[6] ? s[t[6]] : '',
          values: t[4], children: [], parent, depth: parent ? parent.depth + 1 : 0,
        };
        nodes.push(node);
        if (parent) parent.children.push(node);
      }
      for (const n of nodes) n.self = n.values.map((v, i) => v - n.children.reduce((a, c) => a + c.values[i], 0));
      return nodes;
    }

    build() {
      const p = this.profile;
      this.search = el('input', { type: 'search', placeholder: 'Search functions (regex)', 'aria-label': 'search', class: 'search' });
      this.search.addEventListener('input', () => this.setSearch(this.search.value));
      this.share = el('span', { class: 'match-share', 'aria-live': 'polite' });
      const select = el('select', { 'aria-label': 'size by', class: 'size-by' },
        ...p.types.map((t, i) => el('option', { value: i, selected: i === this.type }, t.kind + ' (' + t.unit + ')')));
      select.addEventListener('change', () => {
        this.type = Number(select.value);
        this.setSearch(this.search.value);
      });
      const reset = el('button', { class: 'reset', onclick: () => this.zoomTo(this.root) }, 'Reset zoom');
      this.crumbs = el('div', { class: 'crumbs' });
      this.graph = el('div', { class: 'graph', role: 'img', 'aria-label': p.title + ' flame graph', 'data-profile': p.name });
      this.graph.addEventListener('click', (e) => {
        const f = e.target.closest('.frame');
        if (f) this.zoomTo(this.nodes[Number(f.dataset.id)]);
      });
      this.graph.addEventListener('mousemove', (e) => {
        const f = e.target.closest('.frame');
        if (f) showTooltip(e, this.describe(this.nodes[Number(f.dataset.id)]));
        else hideTooltip();
      });
      this.graph.addEventListener('mouseleave', hideTooltip);
      const notes = [];
      if (p.pruned > 0) {
        notes.push(group(p.pruned) + ' frames under 0.1% of every sample type were pruned (' +
          group(p.nodes) + ' drawn); their values stay in their callers\u2019 self.');
      }
      this.table = el('table', { class: 'top' });
      this.more = el('div', { class: 'more' });
      this.toolbar = el('div', { class: 'toolbar' },
        el('label', {}, 'Size by ', select), this.search, this.share, reset);
      this.panel.append(
        this.toolbar,
        ...notes.map((n) => el('p', { class: 'note pruned', text: n })),
        this.crumbs, this.graph);
      if (p.processes) this.panel.append(...processTable(this, p.processes));
      // I/O by function merges every call site of write() into one row: its table is by
      // call site instead, as the terminal's.
      const sites = p.name === 'io' ? DATA.io_sites : null;
      if (sites && sites.rows.length) {
        this.panel.append(...siteTable(this, sites));
        return;
      }
      this.panel.append(
        el('h3', { text: 'Functions' }),
        el('p', { class: 'note', text: 'Self: the function was the innermost frame; total: it was anywhere in the stack (once per stack). Click a row to find it in the flame graph; click a heading to sort.' + (p.functions_omitted ? ' ' + group(p.functions_omitted) + ' smaller functions are not listed.' : '') }),
        this.table, this.more);
      this.renderTable();
    }

    /** Zooms to a process's frame at the root of the flame graph. */
    zoomToProcess(frame) {
      const node = this.root.children.find((c) => c.name === frame);
      if (!node) return;
      this.zoomTo(node);
      this.toolbar.scrollIntoView({ block: 'start' });
    }

    /** Tooltip lines: name, file:line, and each sample type's total and self. */
    describe(n) {
      const p = this.profile;
      const lines = [el('div', { class: 'name', text: n.name })];
      if (n.flags & 2) lines.push(el('div', { class: 'where', text: 'process' }));
      else if (n.file) lines.push(el('div', { class: 'where', text: n.file + (n.line ? ':' + n.line : '') }));
      if (n.flags & 1) lines.push(el('div', { class: 'where', text: 'kernel' }));
      if (n.why) lines.push(el('div', { class: 'where', text: 'not named: ' + n.why }));
      p.types.forEach((t, i) => {
        lines.push(el('div', {
          text: t.kind + ': ' + fmt(n.values[i], t.unit) + ' (' + pct(n.values[i], p.totals[i]) + '), self ' +
            fmt(n.self[i], t.unit) + ' (' + pct(n.self[i], p.totals[i]) + ')',
        }));
      });
      return lines;
    }

    zoomTo(node) {
      this.zoomed = node;
      this.render();
    }

    setSearch(text) {
      if (this.search.value !== text) this.search.value = text;
      this.pattern = matcher(text);
      const t = this.type;
      const total = this.root.values[t];
      let value = 0;
      let count = 0;
      if (this.pattern) {
        // Matches under a match are already in its value: count the outermost only.
        const todo = [this.root];
        while (todo.length) {
          const n = todo.pop();
          if (n !== this.root && this.pattern.test(n.name)) {
            count++;
            value += n.values[t];
            continue;
          }
          todo.push(...n.children);
        }
        const type = this.profile.types[t];
        this.share.textContent = count === 0 ? 'no match' :
          'matched: ' + pct(value, total) + ' of ' + type.kind + ' (' + fmt(value, type.unit) + ')';
      } else {
        this.share.textContent = '';
      }
      this.share.dataset.share = this.pattern && total > 0 ? (100 * value / total).toFixed(3) : '';
      this.render();
    }

    /** The node a finding points at: its path from the root, then its focus function. */
    target(finding) {
      const t = this.type;
      let node = this.root;
      for (const name of finding.path) {
        const next = node.children.find((c) => c.name === name);
        if (!next) break;
        node = next;
      }
      if (!finding.focus || node.name === finding.focus) return node;
      const heaviest = (from) => {
        let best = null;
        const todo = [from];
        while (todo.length) {
          const n = todo.pop();
          if (n.name === finding.focus && (!best || n.values[t] > best.values[t])) best = n;
          todo.push(...n.children);
        }
        return best;
      };
      return heaviest(node) || heaviest(this.root) || node;
    }

    /** Shows a finding: this tab, its functions highlighted, zoomed to its frame. */
    focus(finding) {
      showTab(this.profile.name);
      this.zoomed = this.target(finding);
      this.setSearch(finding.functions.length ? exactly(finding.functions) : '');
      this.toolbar.scrollIntoView({ block: 'start' });
    }

    render() {
      if (this.panel.hidden) return;
      const p = this.profile;
      const t = this.type;
      const z = this.zoomed;
      const total = z.values[t];
      this.graph.dataset.zoom = String(z.id);
      this.graph.dataset.zoomName = z.name;
      this.graph.classList.toggle('searching', !!this.pattern);
      this.renderCrumbs();
      if (!(total > 0)) {
        const what = this.root.values[t] > 0 ? 'Nothing to show here for ' + p.types[t].kind + '.' :
          'No ' + p.types[t].kind + ' were recorded in this profile.';
        this.graph.replaceChildren(el('div', { class: 'empty', text: what }));
        this.graph.style.height = '';
        return;
      }
      const width = this.graph.clientWidth || 1000;
      const minPct = 100 * MIN_PX / width;
      const frag = document.createDocumentFragment();
      let depth = 0;
      const add = (n, left, w, extra) => {
        const d = n.depth;
        const cls = ['frame'];
        if (n.flags & 1) cls.push('kernel');
        if (n.flags & 2) cls.push('process');
        if (extra) cls.push(extra);
        if (this.pattern && n !== this.root && this.pattern.test(n.name)) cls.push('match');
        const f = el('div', { class: cls.join(' '), 'data-id': n.id, 'data-name': n.name });
        f.style.left = left + '%';
        f.style.width = w + '%';
        f.style.top = d * ROW + 'px';
        f.style.background = n === this.root ? 'hsl(220, 10%, 86%)' : color(p.name, n.name, n.flags);
        f.textContent = n === this.root ? 'all: ' + fmt(n.values[t], p.types[t].unit) : n.name;
        frag.append(f);
        depth = Math.max(depth, d);
      };
      for (let a = z.parent; a; a = a.parent) add(a, 0, 100, 'ancestor');
      // Callees left to right by value, heaviest first.
      const todo = [[z, 0]];
      while (todo.length) {
        const [n, left] = todo.pop();
        const w = 100 * n.values[t] / total;
        if (n !== z && w < minPct) continue;
        add(n, left, w, n === z ? 'zoomed' : '');
        let x = left;
        const kids = n.children.filter((c) => c.values[t] > 0).sort((a, b) => b.values[t] - a.values[t]);
        for (const c of kids) {
          todo.push([c, x]);
          x += 100 * c.values[t] / total;
        }
      }
      this.graph.replaceChildren(frag);
      this.graph.style.height = (depth + 1) * ROW + 2 + 'px';
    }

    renderCrumbs() {
      const path = [];
      for (let n = this.zoomed; n; n = n.parent) path.unshift(n);
      const parts = [];
      path.forEach((n, i) => {
        if (i > 0) parts.push(' › ');
        parts.push(el('a', { onclick: () => this.zoomTo(n), title: 'zoom here' }, n.name));
      });
      this.crumbs.replaceChildren('Zoom: ', ...parts);
    }

    renderTable() {
      const p = this.profile;
      const s = this.sort;
      const rows = p.functions.slice();
      const at = s.column === 'self' ? 1 : 2;
      if (s.column === 'name') {
        rows.sort((a, b) => p.strings[a[0]].localeCompare(p.strings[b[0]]));
      } else {
        rows.sort((a, b) => b[at][s.type] - a[at][s.type]);
      }
      if (s.asc) rows.reverse();
      const head = el('tr', {});
      const th = (label, column, type) => {
        const sorted = s.column === column && (column === 'name' || s.type === type);
        const cell = el('th', {
          class: (column === 'name' ? 'fn' : '') + (sorted ? ' sorted' + (s.asc ? ' asc' : '') : ''),
          'data-column': column, 'data-type': type,
          onclick: () => {
            this.sort = sorted ? { column, type, asc: !s.asc } : { column, type, asc: column === 'name' };
            this.renderTable();
          },
        }, label);
        head.append(cell);
      };
      th('function', 'name', 0);
      p.types.forEach((t, i) => {
        th('self ' + t.kind, 'self', i);
        th('total ' + t.kind, 'total', i);
      });
      const body = el('tbody', {});
      const shown = this.showAll ? rows : rows.slice(0, TABLE_ROWS);
      for (const r of shown) {
        const name = p.strings[r[0]];
        const tr = el('tr', { 'data-name': name, onclick: () => this.find(name) }, el('td', { class: 'fn mono', text: name }));
        p.types.forEach((t, i) => {
          for (const v of [r[1][i], r[2][i]]) {
            tr.append(el('td', {}, fmt(v, t.unit), ' ', el('span', { class: 'pct', text: pct(v, p.totals[i]) })));
          }
        });
        body.append(tr);
      }
      this.table.replaceChildren(el('thead', {}, head), body);
      this.more.replaceChildren();
      if (!this.showAll && rows.length > TABLE_ROWS) {
        this.more.append(el('button', {
          onclick: () => {
            this.showAll = true;
            this.renderTable();
          },
        }, 'Show all ' + group(rows.length) + ' functions'));
      }
    }

    /** Highlights a function in the flame graph, zoomed out. */
    find(name) {
      this.zoomed = this.root;
      this.setSearch(exactly([name]));
      this.toolbar.scrollIntoView({ block: 'start' });
    }
  }

  // ---------------------------------------------------------------------------------------
  // The CPU tab's processes and the I/O tab's call sites

  /** Rows of the processes table shown before "show all". */
  const PROCESS_ROWS = 8;

  /** A sortable numeric heading cell. */
  function sortHeading(label, key, sort, redraw) {
    const sorted = sort.key === key;
    return el('th', {
      'data-column': key,
      class: sorted ? 'sorted' + (sort.asc ? ' asc' : '') : '',
      onclick: () => {
        sort.asc = sorted ? !sort.asc : false;
        sort.key = key;
        redraw();
      },
    }, label);
  }

  /** The processes that had CPU samples: the heading, a note and the table. */
  function processTable(view, data) {
    const table = el('table', { class: 'top processes' });
    const more = el('div', { class: 'more' });
    let all = false;
    const time = (ns) => (ns === null || ns === undefined ? '–' : humanTime(ns));
    const draw = () => {
      const rows = all ? data.rows : data.rows.slice(0, PROCESS_ROWS);
      const body = el('tbody', {});
      for (const r of rows) {
        body.append(el('tr', {
          'data-name': r.name, 'data-pid': r.pid === null ? '' : String(r.pid),
          onclick: () => view.zoomToProcess(r.frame), title: 'zoom to ' + r.frame,
        },
        el('td', { class: 'fn', text: r.name || '[unknown]' }),
        el('td', { text: r.pid === null ? '–' : String(r.pid) }),
        el('td', {}, group(r.samples)),
        el('td', { class: 'pct', text: pct(r.samples, data.total) }),
        el('td', { text: time(r.cpu_ns) })));
      }
      // What is not listed, summed on one line.
      let count = data.rows.length - rows.length;
      let samples = data.rows.slice(rows.length).reduce((a, r) => a + r.samples, 0);
      if (data.others) {
        count += data.others.count;
        samples += data.others.samples;
      }
      if (count > 0) {
        const perSample = data.rows.length && data.rows[0].cpu_ns !== null ? data.rows[0].cpu_ns / data.rows[0].samples : null;
        body.append(el('tr', { class: 'others' },
          el('td', { class: 'fn', text: group(count) + ' other process' + (count === 1 ? '' : 'es') }),
          el('td', {}), el('td', {}, group(samples)),
          el('td', { class: 'pct', text: pct(samples, data.total) }),
          el('td', { text: perSample === null ? '–' : humanTime(samples * perSample) })));
      }
      table.replaceChildren(el('colgroup', {},
        el('col', {}), el('col', { class: 'pid' }), el('col', { class: 'n' }), el('col', { class: 'share' }), el('col', { class: 'n' })),
      el('thead', {}, el('tr', {},
        el('th', { class: 'fn', text: 'process' }), el('th', { text: 'pid' }), el('th', { text: 'samples' }),
        el('th', { text: '%' }), el('th', { text: 'CPU time' }))), body);
      more.replaceChildren();
      if (!all && data.rows.length > PROCESS_ROWS) {
        more.append(el('button', { onclick: () => { all = true; draw(); } }, 'Show ' + group(data.rows.length) + ' processes'));
      }
    };
    draw();
    return [
      el('h3', { text: 'Processes' }),
      el('p', { class: 'note', text: 'CPU samples by process (CPU time = samples / frequency). Click a row to zoom to its process in the flame graph.' }),
      table, more];
  }

  /** The I/O call sites: one row per process, syscall and call stack. */
  function siteTable(view, data) {
    const s = data.strings;
    const columns = [
      ['calls', (r) => r.calls, (r) => group(r.calls)],
      ['bytes', (r) => r.bytes, (r) => humanBytes(r.bytes)],
      ['avg bytes', (r) => (r.calls ? r.bytes / r.calls : 0), (r) => humanBytes(r.calls ? r.bytes / r.calls : 0)],
      ['time', (r) => r.nanos, (r) => humanTime(r.nanos)],
      ['errors', (r) => r.errors, (r) => group(r.errors)],
    ];
    const sort = { key: 'calls', asc: false };
    const open = new Set();
    const table = el('table', { class: 'top sites' });
    const more = el('div', { class: 'more' });
    let all = false;
    const path = (r) => r.path.map((f) => s[f]);
    const details = (r, i) => {
      const facts = [];
      if (r.descriptors.length) facts.push('descriptor: ' + r.descriptors.map((d) => s[d]).join(', '));
      if (r.requested !== null) facts.push('asked for ' + humanBytes(r.requested) + ' (' + humanBytes(r.calls ? r.requested / r.calls : 0) + ' per call)');
      facts.push(group(r.short) + ' short', group(r.eagain) + ' EAGAIN');
      // Innermost first, as a stack trace reads: the syscall's wrapper, the caller, where
      // the site parts from its siblings, then on up to the root.
      const frames = path(r).reverse().map((f) => el('li', {
        class: f === s[r.caller] ? 'caller' : f === s[r.via] ? 'via' : '', text: f,
      }));
      return el('tr', { class: 'site-path', 'data-site': i },
        el('td', { colspan: 3 + columns.length },
          el('ol', { class: 'frames mono' }, ...frames),
          el('div', { class: 'facts' }, facts.join(' · ') + ' '),
          el('button', {
            class: 'show',
            onclick: (e) => {
              e.stopPropagation();
              view.focus({ path: [s[r.frame], ...path(r)], focus: '', functions: [s[r.caller]] });
            },
          }, 'Show in the flame graph →')));
    };
    const draw = () => {
      const order = data.rows.map((r, i) => i);
      const col = columns.find((c) => c[0] === sort.key);
      order.sort((a, b) => col[1](data.rows[b]) - col[1](data.rows[a]) || a - b);
      if (sort.asc) order.reverse();
      const shown = all ? order : order.slice(0, TABLE_ROWS);
      const body = el('tbody', {});
      for (const i of shown) {
        const r = data.rows[i];
        const caller = s[r.caller];
        const tr = el('tr', {
          class: 'site' + (open.has(i) ? ' open' : ''), 'data-site': i, 'data-name': caller,
          'data-process': s[r.process], 'data-syscall': r.syscall,
          onclick: () => {
            if (open.has(i)) open.delete(i);
            else open.add(i);
            draw();
          },
        },
        el('td', { class: 'fn', text: s[r.process], title: s[r.process] }),
        el('td', { class: 'fn mono', text: r.syscall }),
        el('td', { class: 'fn mono caller', title: path(r).join(' › ') }, caller,
          r.via ? el('span', { class: 'via', text: ' via ' + s[r.via] }) : null),
        ...columns.map((c) => el('td', {}, c[2](r))));
        body.append(tr);
        if (open.has(i)) body.append(details(r, i));
      }
      table.replaceChildren(
        el('colgroup', {}, el('col', { class: 'process' }), el('col', { class: 'syscall' }), el('col', {}),
          ...columns.map(() => el('col', { class: 'n' }))),
        el('thead', {}, el('tr', {},
          el('th', { class: 'fn', text: 'process' }), el('th', { class: 'fn', text: 'syscall' }),
          el('th', { class: 'fn', text: 'caller' }),
          ...columns.map((c) => sortHeading(c[0], c[0], sort, draw)))),
        body);
      more.replaceChildren();
      if (!all && order.length > TABLE_ROWS) {
        more.append(el('button', { onclick: () => { all = true; draw(); } }, 'Show all ' + group(order.length) + ' call sites'));
      }
    };
    draw();
    return [
      el('h3', { text: 'Call sites' }),
      el('p', { class: 'note', text: 'One row per call site: a process, a syscall and the call stack it was made from. The caller is the function that called into the C library; \u201cvia\u201d names the frame above it where sites of the same caller part. Hover a caller for its whole path, click a row to open it; click a heading to sort.' + (data.omitted ? ' ' + group(data.omitted) + ' sites with fewer calls are not listed.' : '') }),
      table, more];
  }

  // ---------------------------------------------------------------------------------------
  // Start

  renderHeader();
  const findingsPanel = addTab('findings', 'Findings', DATA.findings_total);
  for (const p of DATA.profiles) views[p.name] = new ProfileView(p, addTab(p.name, p.title));
  renderFindings(findingsPanel);
  window.addEventListener('resize', () => {
    const id = document.body.dataset.tab;
    if (views[id]) views[id].render();
  });
  const wanted = location.hash.slice(1);
  showTab(wanted === 'findings' || views[wanted] ? wanted : 'findings');
  // Lets scripted checks (and the curious) drive the page.
  window.profilerReport = { data: DATA, views, showTab };
  document.body.dataset.ready = 'true';
})();
