// baton's pages, live. Without this script every page still shows everything and every form works;
// with it, a task's timeline grows as its events are journaled and the task list follows statuses.
"use strict";

(function () {
  // Calls `run` once things have been quiet for `ms`, however often `poke` is called meanwhile.
  function settle(run, ms) {
    var timer = null;
    return function poke() {
      if (timer) { clearTimeout(timer); }
      timer = setTimeout(function () { timer = null; run(); }, ms);
    };
  }

  function read(url) {
    return fetch(url, { credentials: "same-origin" }).then(function (response) {
      if (!response.ok) { throw new Error(url + ": " + response.status); }
      return response.text();
    });
  }

  function replaceWith(target, url) {
    return read(url).then(function (html) { target.innerHTML = html; });
  }

  // The task's facts again; its forms only when what they are for changed (a status, a
  // decision), so that nothing half typed is lost.
  function renew(header, url) {
    return read(url).then(function (html) {
      var fresh = new DOMParser().parseFromString(html, "text/html");
      document.getElementById("facts").innerHTML = fresh.getElementById("facts").innerHTML;
      var controls = document.getElementById("controls");
      var next = fresh.getElementById("controls");
      if (controls.dataset.key !== next.dataset.key) {
        controls.innerHTML = next.innerHTML;
        controls.dataset.key = next.dataset.key;
      }
    });
  }

  // A task's page: entries the server renders arrive over its stream, from the first event the
  // page does not show; the header is read again as they come.
  var timeline = document.getElementById("timeline");
  if (timeline && timeline.dataset.live === "true" && window.EventSource) {
    var task = timeline.dataset.task;
    var header = document.getElementById("header");
    var refresh = settle(function () { renew(header, "/ui/tasks/" + task + "/header"); }, 300);
    var ended = function () {
      var status = header.querySelector(".status");
      return status && /^(done|failed|cancelled)$/.test(status.textContent.trim());
    };
    var follow = function () {
      var source = new EventSource("/ui/tasks/" + task + "/stream?from=" + timeline.dataset.next);
      source.onmessage = function (message) {
        timeline.dataset.next = String(Number(message.lastEventId) + 1);
        if (message.data) { timeline.insertAdjacentHTML("beforeend", message.data); }
        refresh();
      };
      // The stream ends with the task, or breaks: follow again from the next event unless the
      // task has ended (the browser's own retry would start from the page's first event).
      source.onerror = function () {
        source.close();
        refresh();
        setTimeout(function () { if (!ended()) { follow(); } }, 2000);
      };
    };
    follow();
  }

  // The task list: its rows again whenever some task's status changes.
  var rows = document.getElementById("task-rows");
  if (rows && window.EventSource) {
    var reload = settle(function () {
      var query = new URLSearchParams(window.location.search);
      query.set("rows", "true");
      replaceWith(rows, "/?" + query.toString());
    }, 300);
    var statuses = new EventSource("/api/v1/events/stream");
    statuses.addEventListener("status", reload);
  }
})();
