/*
 * Live regions: parts of a page that refresh themselves when the server says they changed.
 *
 * A region is an element with an id and data-live="topic topic:id ...", e.g.
 *   <div id="task-list" data-live="task queue">     any task or queue message
 *   <div id="task-panel" data-live="task:42">       messages about task 42 only
 * The socket (/ws/live/, the session's login) carries short messages such as
 * {"topic": "task", "id": 42, "state": "in_progress"}; a message never carries what to show.
 * The page re-fetches itself (its current URL, with its filters) and swaps in the fresh
 * copies of the matching regions, so what appears is exactly what the page lets this user see.
 *
 * - Messages that arrive together are coalesced into one fetch.
 * - A region holding the field being typed in is left alone and retried a little later.
 * - The socket reconnects with exponential backoff (1 s doubling to 30 s, with jitter);
 *   after a reconnect every region is re-fetched, so nothing missed meanwhile is lost.
 * - When the server says its channel layer does not reach across processes (the embedded
 *   default), regions are also re-fetched every `poll_seconds`.
 * Events for whoever wants them: "live:message" (detail: the message), "live:refreshed"
 * (detail: {ids}) on document; <html data-live-socket="open|closed">.
 */
(function () {
  "use strict";

  var script = document.currentScript;
  var path = (script && script.dataset.socket) || "/ws/live/";
  var MIN_DELAY = 1000;
  var MAX_DELAY = 30000;
  var BUSY_RETRY = 2000;
  var delay = MIN_DELAY;
  var connectedBefore = false;
  var pollTimer = null;
  var pending = new Set();
  var flushTimer = null;
  var inFlight = false;

  function regions() {
    return Array.prototype.slice.call(document.querySelectorAll("[data-live][id]"));
  }

  function matches(region, message) {
    var tokens = region.dataset.live.split(/\s+/);
    if (tokens.indexOf(message.topic) !== -1) {
      return true;
    }
    return message.id !== undefined && tokens.indexOf(message.topic + ":" + message.id) !== -1;
  }

  function editing(region) {
    var active = document.activeElement;
    return !!active && region.contains(active) && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName);
  }

  function schedule(list, wait) {
    list.forEach(function (region) { pending.add(region.id); });
    if (pending.size && !flushTimer) {
      flushTimer = setTimeout(flush, wait || 50);
    }
  }

  function flush() {
    flushTimer = null;
    if (inFlight) {
      flushTimer = setTimeout(flush, 100);
      return;
    }
    var ids = [];
    var busy = [];
    pending.forEach(function (id) {
      var region = document.getElementById(id);
      if (!region) {
        return;
      }
      (editing(region) ? busy : ids).push(id);
    });
    pending.clear();
    if (busy.length) {
      schedule(busy.map(function (id) { return document.getElementById(id); }), BUSY_RETRY);
    }
    if (!ids.length) {
      return;
    }
    inFlight = true;
    fetch(window.location.href, {credentials: "same-origin", headers: {"Accept": "text/html"}})
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (html === null) {
          return;
        }
        var fresh = new DOMParser().parseFromString(html, "text/html");
        var swapped = [];
        ids.forEach(function (id) {
          var current = document.getElementById(id);
          var next = fresh.getElementById(id);
          if (!current || !next) {
            return;
          }
          if (editing(current)) {
            schedule([current], BUSY_RETRY);
            return;
          }
          var node = document.importNode(next, true);
          current.replaceWith(node);
          if (window.htmx) {
            window.htmx.process(node);
          }
          swapped.push(id);
        });
        document.dispatchEvent(new CustomEvent("live:refreshed", {detail: {ids: swapped}}));
      })
      .catch(function () { /* the next message, reconnect or poll catches up */ })
      .then(function () { inFlight = false; });
  }

  function poll(seconds) {
    if (pollTimer) {
      clearInterval(pollTimer);
      pollTimer = null;
    }
    if (seconds > 0) {
      pollTimer = setInterval(function () { schedule(regions()); }, seconds * 1000);
    }
  }

  function connect() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + window.location.host + path);
    socket.onopen = function () {
      delay = MIN_DELAY;
      document.documentElement.dataset.liveSocket = "open";
      if (connectedBefore) {
        schedule(regions());  // catch up on what changed while the socket was down
      }
      connectedBefore = true;
    };
    socket.onmessage = function (event) {
      var message;
      try {
        message = JSON.parse(event.data);
      } catch (error) {
        return;
      }
      if (message.topic === "hello") {
        poll(message.poll_seconds || 0);
        return;
      }
      document.dispatchEvent(new CustomEvent("live:message", {detail: message}));
      schedule(regions().filter(function (region) { return matches(region, message); }));
    };
    socket.onclose = function (event) {
      document.documentElement.dataset.liveSocket = "closed";
      if (event.code === 4401) {
        return;  // logged out: nothing to listen to
      }
      var wait = delay + Math.floor(Math.random() * delay / 2);
      delay = Math.min(delay * 2, MAX_DELAY);
      setTimeout(connect, wait);
    };
  }

  function start() {
    if (regions().length) {
      connect();
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());
