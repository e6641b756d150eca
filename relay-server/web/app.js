// Relay web console: sign in, list agents, open a shell on one over a WebSocket.
// No framework and no build step; the vendored xterm UMD builds define the globals used here.
'use strict';

(() => {
  const $ = (selector) => document.querySelector(selector);
  const ui = {
    loading: $('#loading'),
    signin: $('#signin'),
    providers: $('#providers'),
    who: $('#who'),
    logout: $('#logout'),
    workspace: $('#workspace'),
    agents: $('#agents'),
    live: $('#live'),
    liveHead: $('#live-head'),
    refresh: $('#refresh-agents'),
    status: $('#status'),
    terminal: $('#terminal'),
    terminalFrame: $('.terminal-frame'),
    replay: $('#replay'),
    replayTitle: $('#replay-title'),
    recordings: $('#recordings'),
    player: $('#player'),
    seek: $('#seek'),
    seekGo: $('#seek-go'),
    replayClose: $('#replay-close'),
    error: $('#error'),
  };

  const encoder = new TextEncoder();

  // Written before each new shell so it starts on a clean screen, in order with the output that
  // follows: leave the alternate screen, soft reset (DECSTR: colours, cursor, keypad and paste
  // modes), mouse reporting off, then clear the screen and the scrollback. Not term.reset():
  // with the WebGL renderer (xterm 6.0.0, addon-webgl 0.19.0) it leaves the previous session's
  // background colours and cursor painted on the cleared screen.
  const FRESH_SCREEN = '\x1b[?1049l\x1b[!p\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1006l\x1b[H\x1b[2J\x1b[3J';

  // The CSRF token from /api/session; the session itself is an HttpOnly cookie we never see.
  let csrf = null;

  // The shell currently shown: { ws, agent, sessionId, offset, done, retries }. sessionId (from
  // "opened") and offset (output bytes shown) re-attach it after a dropped connection.
  let shell = null;

  // ---------------------------------------------------------------- terminal

  // Campbell, the scheme of Windows Terminal and Azure Cloud Shell.
  const theme = {
    background: '#0c0c0c',
    foreground: '#cccccc',
    cursor: '#ffffff',
    cursorAccent: '#0c0c0c',
    selectionBackground: 'rgba(255, 255, 255, 0.3)',
    black: '#0c0c0c',
    red: '#c50f1f',
    green: '#13a10e',
    yellow: '#c19c00',
    blue: '#0037da',
    magenta: '#881798',
    cyan: '#3a96dd',
    white: '#cccccc',
    brightBlack: '#767676',
    brightRed: '#e74856',
    brightGreen: '#16c60c',
    brightYellow: '#f9f1a5',
    brightBlue: '#3b78ff',
    brightMagenta: '#b4009e',
    brightCyan: '#61d6d6',
    brightWhite: '#f2f2f2',
  };

  const term = new Terminal({
    theme,
    // System fonts only: the CSP (font-src 'self') and the single binary ship no web fonts.
    fontFamily: '"Cascadia Mono", "Cascadia Code", Consolas, "SF Mono", Menlo, "DejaVu Sans Mono", "Liberation Mono", monospace',
    fontSize: 14,
    cursorBlink: true,
    scrollback: 5000,
    // Nothing to type into until a shell is open.
    disableStdin: true,
  });
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  window.relayShell = { term };

  // Opens xterm into #terminal the first time the workspace is visible (it measures the font).
  function ensureTerminal() {
    if (term.element) return;
    useWebglRenderer();
    term.open(ui.terminal);
    adoptXtermStyles(term.element.querySelector('.xterm-screen'));
    fit.fit();
  }

  // xterm 6 writes part of its CSS into <style> elements it adds to .xterm-screen at run time:
  // the scrollbar colours (Viewport) and, with the DOM renderer, the palette, font, cursor and
  // selection rules (DomRenderer). The page's CSP (style-src 'self') blocks those elements and
  // the console reports each one. The same text, set through the CSSOM as constructed
  // stylesheets, is allowed (CSP governs markup, not the CSSOM, as with element.style), so this
  // mirrors every such <style> into document.adoptedStyleSheets and keeps it in step.
  function adoptXtermStyles(screen) {
    const sheets = new Map(); // <style> element -> { sheet, text }
    let adopted = new Set();
    // Only the screen's own children and the <style> texts are watched, not the rows, which
    // change with every frame of output.
    const textWatch = new MutationObserver(() => sync());
    const sync = () => {
      let changed = false;
      for (const style of sheets.keys()) {
        if (!style.isConnected) { sheets.delete(style); changed = true; }
      }
      for (const style of screen.querySelectorAll(':scope > style')) {
        let entry = sheets.get(style);
        if (!entry) {
          entry = { sheet: new CSSStyleSheet(), text: null };
          sheets.set(style, entry);
          textWatch.observe(style, { childList: true, characterData: true, subtree: true });
          changed = true;
        }
        if (entry.text !== style.textContent) {
          entry.text = style.textContent;
          entry.sheet.replaceSync(entry.text);
        }
      }
      if (changed) {
        const ours = new Set([...sheets.values()].map((e) => e.sheet));
        const others = document.adoptedStyleSheets.filter((s) => !adopted.has(s));
        adopted = ours;
        document.adoptedStyleSheets = [...others, ...ours];
      }
    };
    new MutationObserver(sync).observe(screen, { childList: true });
    sync();
  }

  // The WebGL renderer draws to a canvas. It is loaded before open() so xterm never builds its
  // DOM renderer, which needs the <style> mirroring above and still loses 24-bit colours under
  // the CSP: it sets those as style="" attributes (DomRendererRowFactory), which no script can
  // rescue. Without WebGL2 xterm uses the DOM renderer, and the page stays usable.
  function useWebglRenderer() {
    if (!window.WebglAddon || !webgl2Available()) return;
    try {
      const webgl = new WebglAddon.WebglAddon();
      // On GPU reset the context is gone for good; disposing the addon hands back to the DOM renderer.
      webgl.onContextLoss(() => webgl.dispose());
      term.loadAddon(webgl);
    } catch (err) {
      console.warn('WebGL renderer unavailable, using the DOM renderer', err);
    }
  }

  // Asked first because the addon's own failure surfaces as an uncaught error, though xterm
  // then falls back to the DOM renderer. The probe context is released at once.
  function webgl2Available() {
    try {
      const gl = document.createElement('canvas').getContext('webgl2');
      gl?.getExtension('WEBGL_lose_context')?.loseContext();
      return Boolean(gl);
    } catch {
      return false;
    }
  }

  // Refit once per frame at most, on any change of the terminal's box (window resize, layout).
  let fitQueued = false;
  function queueFit() {
    if (fitQueued) return;
    fitQueued = true;
    requestAnimationFrame(() => {
      fitQueued = false;
      // A hidden container measures 0x0; the fit addon would give up anyway.
      if (term.element && ui.terminal.offsetParent !== null) fit.fit();
    });
  }
  new ResizeObserver(queueFit).observe(ui.terminal);
  window.addEventListener('resize', queueFit);

  function sendBytes(bytes) {
    if (bytes.length > 0 && shell && !shell.done && shell.ws.readyState === WebSocket.OPEN) shell.ws.send(bytes);
  }
  function sendControl(message) {
    if (shell && !shell.done && shell.ws.readyState === WebSocket.OPEN) shell.ws.send(JSON.stringify(message));
  }

  // Keyboard input goes out as binary frames; text frames are reserved for control messages.
  term.onData((data) => sendBytes(encoder.encode(data)));
  // onBinary carries raw bytes (e.g. some mouse reports) as a string of code points 0-255.
  term.onBinary((data) => sendBytes(Uint8Array.from(data, (c) => c.charCodeAt(0) & 0xff)));
  term.onResize(({ cols, rows }) => sendControl({ type: 'resize', cols, rows }));

  // Terminal-style clipboard keys. Left to xterm, Ctrl+Shift+C would send ^C to the shell and
  // Ctrl+Shift+V / Shift+Insert would send ^V / an escape sequence instead of pasting. Returning
  // false makes xterm ignore the key; for paste we then leave the browser's default alone, which
  // fires a paste event on xterm's textarea, and xterm sends the pasted text (bracketed if asked).
  term.attachCustomKeyEventHandler((event) => {
    const key = event.code;
    const copy = (event.ctrlKey && event.shiftKey && !event.altKey && key === 'KeyC')
      || (event.ctrlKey && !event.shiftKey && !event.altKey && key === 'Insert');
    const paste = (event.ctrlKey && event.shiftKey && !event.altKey && key === 'KeyV')
      || (event.shiftKey && !event.ctrlKey && !event.altKey && key === 'Insert');
    if (copy) {
      if (event.type === 'keydown') {
        event.preventDefault(); // Ctrl+Shift+C would otherwise open the browser's inspector.
        if (term.hasSelection()) {
          navigator.clipboard?.writeText(term.getSelection()).catch((err) => console.warn('copy failed', err));
        }
      }
      return false;
    }
    return !paste;
  });

  // ---------------------------------------------------------------- status and errors

  function showError(text) {
    ui.error.textContent = text || '';
    ui.error.hidden = !text;
  }

  // state: idle | connecting | connected | ended (+ failed for anything but a normal exit)
  function setStatus(text, state) {
    ui.status.textContent = text;
    ui.status.className = state;
  }

  // ---------------------------------------------------------------- API

  async function api(path, options = {}) {
    const response = await fetch(path, {
      credentials: 'same-origin',
      cache: 'no-store',
      ...options,
      headers: { Accept: 'application/json', ...options.headers },
    });
    let body = null;
    if (response.status !== 204) {
      try { body = await response.json(); } catch { body = null; }
    }
    return { status: response.status, ok: response.ok, body };
  }

  function describeFailure(what, result) {
    const detail = result.body?.error || `HTTP ${result.status}`;
    return `${what}: ${detail}`;
  }

  // ---------------------------------------------------------------- views

  async function loadSession() {
    let result;
    try {
      result = await api('/api/session');
    } catch (err) {
      ui.loading.textContent = 'The relay cannot be reached. Reload the page to try again.';
      showError(String(err.message || err));
      return;
    }
    ui.loading.hidden = true;
    if (result.ok) {
      showSignedIn(result.body);
    } else if (result.status === 401) {
      showSignedOut(result.body?.providers || []);
    } else {
      showError(describeFailure('Cannot read the session', result));
    }
  }

  function showSignedOut(providers) {
    csrf = null;
    closeShell();
    ui.workspace.hidden = true;
    ui.who.hidden = true;
    ui.logout.hidden = true;

    const links = providers.map(({ name }) => {
      const link = document.createElement('a');
      link.className = 'provider';
      link.dataset.provider = name;
      // A full-page navigation: the relay redirects to the provider and back to "/".
      link.href = `/login?provider=${encodeURIComponent(name)}`;
      link.textContent = `Sign in with ${name}`;
      return link;
    });
    if (links.length === 0) {
      const none = document.createElement('p');
      none.className = 'muted';
      none.textContent = 'No sign-in provider is configured on this relay.';
      links.push(none);
    }
    ui.providers.replaceChildren(...links);
    ui.signin.hidden = false;
  }

  function showSignedIn(session) {
    csrf = session.csrf;
    ui.signin.hidden = true;

    const identity = document.createElement('span');
    identity.className = 'identity';
    identity.textContent = session.identity;
    const groups = (session.groups || []).map((group) => {
      const tag = document.createElement('span');
      tag.className = 'tag';
      tag.textContent = group;
      return tag;
    });
    ui.who.replaceChildren(identity, ...groups);
    ui.who.title = [session.name, session.expires && `session expires ${new Date(session.expires).toLocaleString()}`]
      .filter(Boolean).join(' \u00b7 ');
    ui.who.hidden = false;
    ui.logout.hidden = false;

    ui.workspace.hidden = false;
    ensureTerminal();
    loadAgents();
    loadLive();
    // A link such as https://relay/#shell=aks-prod opens a shell there at once; otherwise a
    // shell left running (closed tab, lost network) is shown again.
    if (!openFromHash()) resumeShells();
  }

  // Opens the shell a `#shell=AGENT` link asks for, if it does and we are signed in.
  function openFromHash() {
    if (!csrf || !location.hash.startsWith('#shell=')) return false;
    const agent = decodeURIComponent(location.hash.slice('#shell='.length));
    history.replaceState(null, '', location.pathname);
    if (agent) openShell(agent);
    return Boolean(agent);
  }
  window.addEventListener('hashchange', openFromHash);

  // The relay answers 401 once the session is gone (expired, revoked, signed out elsewhere).
  // If /api/session says so too, it also lists the providers for the signed-out view.
  async function checkSignedIn() {
    const result = await api('/api/session').catch(() => null);
    if (result?.status !== 401) return;
    showError('Your session has ended. Sign in again.');
    showSignedOut(result.body?.providers || []);
  }

  async function loadAgents() {
    let result;
    try {
      result = await api('/api/agents');
    } catch (err) {
      showError(`Cannot list agents: ${err.message || err}`);
      return;
    }
    if (result.status === 401) {
      checkSignedIn();
      return;
    }
    if (!result.ok) {
      showError(describeFailure('Cannot list agents', result));
      return;
    }
    renderAgents(result.body?.agents || []);
  }

  function renderAgents(agents) {
    const items = agents.map(({ agent, targets = [], sessions = [] }) => {
      const item = document.createElement('li');
      item.className = 'agent';
      item.dataset.agent = agent;
      item.classList.toggle('active', Boolean(shell && !shell.done && shell.agent === agent));

      const info = document.createElement('div');
      info.className = 'agent-info';
      const name = document.createElement('div');
      name.className = 'agent-name';
      name.textContent = agent;
      name.title = agent;
      const targetList = document.createElement('div');
      targetList.className = 'agent-targets';
      // What `relay-client list` shows: the targets, then the session kinds granted there.
      for (const target of targets) {
        const tag = document.createElement('span');
        tag.className = 'tag';
        tag.textContent = target;
        targetList.append(tag);
      }
      for (const kind of sessions) {
        const tag = document.createElement('span');
        tag.className = 'tag kind';
        tag.textContent = kind;
        targetList.append(tag);
      }
      if (targets.length === 0 && sessions.length === 0) {
        const none = document.createElement('span');
        none.className = 'none';
        none.textContent = 'nothing granted';
        targetList.append(none);
      }
      info.append(name, targetList);
      item.append(info);

      if (sessions.includes('recordings')) {
        const recordings = document.createElement('button');
        recordings.type = 'button';
        recordings.className = 'recordings';
        recordings.dataset.agent = agent;
        recordings.textContent = 'Recordings';
        item.append(recordings);
      }
      if (sessions.includes('shell')) {
        const open = document.createElement('button');
        open.type = 'button';
        open.className = 'open-shell';
        open.dataset.agent = agent;
        open.textContent = 'Open shell';
        item.append(open);
      }
      return item;
    });
    if (items.length === 0) {
      const empty = document.createElement('li');
      empty.className = 'empty';
      empty.textContent = 'No agents are available to you right now.';
      items.push(empty);
    }
    ui.agents.replaceChildren(...items);
  }

  function markActiveAgent(agent) {
    for (const item of ui.agents.querySelectorAll('.agent')) {
      item.classList.toggle('active', item.dataset.agent === agent);
    }
  }

  // ---------------------------------------------------------------- shell sessions

  // Opens a new shell on `agent`.
  function openShell(agent) {
    startShell(agent, { agent });
  }

  // Shows a shell the relay still holds (the tab was closed, the network lost): all the output
  // the relay kept is sent again from the start, as this page has none of it.
  function reattachShell(terminal) {
    startShell(terminal.agent, { session: terminal.session, from: 0 });
  }

  // Watches another person's shell, read-only (the policy's watch = true).
  function watchShell(live) {
    startShell(live.agent, { session: live.session }, live.owner);
  }

  function startShell(agent, ask, watching = null) {
    closeShell();
    closeReplay();
    showError('');
    ensureTerminal();
    fit.fit();
    term.write(FRESH_SCREEN);
    term.options.disableStdin = Boolean(watching);
    term.options.cursorBlink = !watching;
    const current = { ws: null, agent, sessionId: null, offset: 0, done: false, retries: 0, watching, watchers: [] };
    shell = current;
    setStatus(`connecting to ${agent}\u2026`, 'connecting');
    markActiveAgent(agent);
    connect(current, { ...ask, cols: term.cols, rows: term.rows });
  }

  // One WebSocket to the relay for `current`. A connection lost while the shell runs is
  // re-attached with the output offset this page has, so nothing is shown twice or skipped.
  function connect(current, ask) {
    const query = new URLSearchParams(ask);
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const path = current.watching ? '/api/watch' : '/api/shell';
    const ws = new WebSocket(`${scheme}//${location.host}${path}?${query}`);
    ws.binaryType = 'arraybuffer';
    current.ws = ws;

    // Each handler checks it still belongs to the shown shell: an old socket may close late.
    ws.addEventListener('message', (event) => {
      if (shell !== current || current.done || current.ws !== ws) return;
      if (typeof event.data === 'string') {
        handleControl(current, event.data);
      } else {
        // Raw bytes: xterm reassembles a UTF-8 sequence split across two messages.
        current.offset += event.data.byteLength;
        term.write(new Uint8Array(event.data));
      }
    });
    ws.addEventListener('close', () => {
      if (shell !== current || current.done || current.ws !== ws) return;
      if (current.sessionId && !current.watching && current.retries < RECONNECT_TRIES) {
        // The relay keeps the shell for a while (5 minutes by default): try again, backing off.
        const wait = Math.min(500 * 2 ** current.retries, 10000);
        current.retries += 1;
        setStatus(`connection lost, reconnecting to ${current.agent}\u2026`, 'connecting');
        setTimeout(() => {
          if (shell === current && !current.done) {
            connect(current, { session: current.sessionId, from: current.offset });
          }
        }, wait);
        return;
      }
      finishShell(current, 'connection lost', 'failed');
      // A handshake refused for an ended session looks the same from here; find out which.
      checkSignedIn();
    });
  }

  // Reconnection attempts before the page gives up (about five minutes with the back-off).
  const RECONNECT_TRIES = 35;

  // Re-attaches to a shell the relay still holds for this sign-in, if there is one.
  async function resumeShells() {
    const result = await api('/api/terminals').catch(() => null);
    const terminals = result?.ok ? result.body?.terminals || [] : [];
    const waiting = terminals.find((t) => !t.attached) || terminals[0];
    if (waiting && !shell) reattachShell(waiting);
  }

  function handleControl(current, text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      console.warn('ignoring a malformed control message', text);
      return;
    }
    switch (message.type) {
      case 'opened':
        current.sessionId = message.session ?? null;
        // Where the relay starts this connection's output: later than asked when its buffer
        // no longer held everything this page missed.
        if (typeof message.from === 'number' && message.from > current.offset) {
          term.write(`\r\n[${message.from - current.offset} bytes of output were dropped while away]\r\n`);
        }
        if (typeof message.from === 'number') current.offset = message.from;
        current.retries = 0;
        showConnected(current);
        term.focus();
        break;
      case 'exit': {
        const how = message.message || `exited with status ${message.status}`;
        finishShell(current, `session ended: ${how}`, message.status === 0 ? '' : 'failed');
        break;
      }
      case 'refused':
        finishShell(current, `refused: ${message.message}`, 'failed');
        showError(`Refused: ${message.message}`);
        break;
      case 'ended':
        finishShell(current, `session ended: ${message.message}`, 'failed');
        break;
      case 'watchers':
        current.watchers = message.watchers || [];
        showConnected(current);
        break;
      case 'detached':
        finishShell(current, `detached: ${message.message}`, 'failed');
        break;
      default:
        // Newer relays may add messages; an older page ignores them.
        break;
    }
  }

  // The status line of a running shell: whose, where, and who watches it.
  function showConnected(current) {
    let text = current.watching
      ? `watching ${current.watching} on ${current.agent} (read-only)`
      : `connected to ${current.agent}`;
    if (current.watchers.length > 0) text += ` \u00b7 watched by ${current.watchers.join(', ')}`;
    setStatus(text, 'connected');
  }

  // Other people's shells this person may watch.
  async function loadLive() {
    const result = await api('/api/live').catch(() => null);
    const live = result?.ok ? result.body?.live || [] : [];
    const items = live.map((entry) => {
      const item = document.createElement('li');
      item.className = 'agent live';
      item.dataset.session = entry.session;
      const info = document.createElement('div');
      info.className = 'agent-info';
      const name = document.createElement('div');
      name.className = 'agent-name';
      name.textContent = entry.owner;
      const where = document.createElement('div');
      where.className = 'agent-targets';
      where.textContent = `on ${entry.agent}`;
      info.append(name, where);
      const watch = document.createElement('button');
      watch.type = 'button';
      watch.className = 'watch';
      watch.dataset.session = entry.session;
      watch.textContent = 'Watch';
      watch.addEventListener('click', () => watchShell(entry));
      item.append(info, watch);
      return item;
    });
    ui.live.replaceChildren(...items);
    ui.live.hidden = items.length === 0;
    ui.liveHead.hidden = items.length === 0;
  }

  // Marks the shell finished: no more input, a visible end banner, and the socket let go.
  function finishShell(current, text, failure) {
    current.done = true;
    setStatus(text, failure ? `ended ${failure}` : 'ended');
    term.options.disableStdin = true;
    term.options.cursorBlink = false;
    markActiveAgent(null);
    if (current.ws.readyState <= WebSocket.OPEN) current.ws.close(1000);
  }

  // Closes the shown shell on purpose (another shell, sign-out); nothing to report.
  function closeShell() {
    if (!shell) return;
    const old = shell;
    shell = null;
    old.done = true;
    if (old.ws.readyState <= WebSocket.OPEN) old.ws.close(1000);
    term.options.disableStdin = true;
    markActiveAgent(null);
    setStatus('Choose an agent to open a shell.', 'idle');
  }

  // ---------------------------------------------------------------- recordings

  // The recordings view: { agent, name, player }. The relay answers a recording a window at a
  // time (the screen at the asked point, then up to a minute), so a long one never loads whole:
  // the next window is asked for when one ends, any point for a seek.
  let replay = null;

  function showReplay(show) {
    ui.replay.hidden = !show;
    ui.terminalFrame.hidden = show;
  }

  function closeReplay() {
    replay?.player?.dispose();
    replay = null;
    window.relayReplay = null;
    ui.player.replaceChildren();
    showReplay(false);
    queueFit();
  }

  async function openRecordings(agent) {
    closeShell();
    closeReplay();
    showError('');
    replay = { agent, name: null, player: null };
    showReplay(true);
    ui.replayTitle.textContent = `Recordings on ${agent}`;
    ui.recordings.replaceChildren();
    const result = await api(`/api/recordings?agent=${encodeURIComponent(agent)}`).catch(() => null);
    if (!result?.ok) {
      showError(`Cannot list the recordings: ${result?.body?.error || 'the relay did not answer'}`);
      return;
    }
    const items = (result.body.recordings || []).map((rec) => {
      const item = document.createElement('li');
      const play = document.createElement('button');
      play.type = 'button';
      play.className = 'play';
      play.dataset.name = rec.name;
      play.textContent = 'Play';
      const what = document.createElement('span');
      what.textContent = rec.title || rec.name;
      const when = document.createElement('span');
      when.className = 'muted';
      const kib = Math.max(1, Math.round((rec.size || 0) / 1024));
      when.textContent = `${new Date((rec.modified || 0) * 1000).toLocaleString()} \u00b7 ${kib} KiB`;
      item.append(play, what, when);
      return item;
    });
    if (items.length === 0) {
      const none = document.createElement('li');
      none.className = 'muted';
      none.textContent = 'No recordings on this agent yet.';
      items.push(none);
    }
    ui.recordings.replaceChildren(...items);
  }

  async function playRecording(agent, name, from) {
    if (!replay) return;
    const query = new URLSearchParams({ agent, name, from });
    const result = await api(`/api/recordings/play?${query}`).catch(() => null);
    if (!replay) return;
    if (!result?.ok) {
      showError(`Cannot play the recording: ${result?.body?.error || 'the relay did not answer'}`);
      return;
    }
    const { cast, next } = result.body;
    replay.player?.dispose();
    ui.player.replaceChildren();
    replay.name = name;
    ui.seek.value = String(Math.floor(from));
    ui.replayTitle.textContent = `${name}, from ${Math.floor(from)} s`;
    const player = AsciinemaPlayer.create({ data: cast }, ui.player, { autoPlay: true, fit: 'width' });
    replay.player = player;
    window.relayReplay = { player, from, next };
    player.addEventListener('ended', () => {
      if (replay?.player === player && next !== null && next !== undefined) playRecording(agent, name, next);
    });
  }

  // ---------------------------------------------------------------- wiring

  ui.agents.addEventListener('click', (event) => {
    const button = event.target.closest('button.open-shell');
    if (button) openShell(button.dataset.agent);
    const recordings = event.target.closest('button.recordings');
    if (recordings) openRecordings(recordings.dataset.agent);
  });
  ui.recordings.addEventListener('click', (event) => {
    const button = event.target.closest('button.play');
    if (button && replay) playRecording(replay.agent, button.dataset.name, 0);
  });
  ui.seekGo.addEventListener('click', () => {
    if (replay?.name) playRecording(replay.agent, replay.name, Math.max(0, Number(ui.seek.value) || 0));
  });
  ui.replayClose.addEventListener('click', () => closeReplay());

  ui.refresh.addEventListener('click', () => { loadAgents(); loadLive(); });

  ui.logout.addEventListener('click', async () => {
    ui.logout.disabled = true;
    try {
      const result = await api('/logout', { method: 'POST', headers: { 'X-CSRF-Token': csrf || '' } });
      if (result.ok || result.status === 401) {
        showError('');
        const session = await api('/api/session').catch(() => null);
        showSignedOut(session?.body?.providers || []);
      } else {
        showError(describeFailure('Sign-out failed', result));
      }
    } catch (err) {
      showError(`Sign-out failed: ${err.message || err}`);
    } finally {
      ui.logout.disabled = false;
    }
  });

  // A failed sign-in comes back as /?error=...; show it once and drop it from the address bar
  // so a reload does not repeat it.
  const params = new URLSearchParams(location.search);
  if (params.has('error')) {
    showError(`Sign-in failed: ${params.get('error')}`);
    history.replaceState(null, '', location.pathname);
  }

  loadSession();
})();
