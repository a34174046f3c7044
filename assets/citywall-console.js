/* citywall console glue (值班控制台): a case clicked on the map selects it; pushed events refresh the
 * queue and, when it changed, the selected case's detail (at most twice a second). */
(function () {
  "use strict";
  var cw = (window.citywall = window.citywall || {});
  var n = 0, ids = {}, timer = null;
  function isConsole() { return !!document.getElementById("console-root"); }
  function flush() {
    timer = null;
    n++;
    cw.setProps("console-refresh", {data: {n: n, ids: Object.keys(ids).map(Number)}});
    ids = {};
  }
  cw.onEvents = function (evs) {
    if (!isConsole()) return;
    for (var i = 0; i < evs.length; i++) if (evs[i].c) ids[evs[i].c.id] = true;
    if (!timer) timer = setTimeout(flush, 400);
  };
  var wallClick = null;
  Object.defineProperty(cw, "onCaseClick", {
    configurable: true,
    get: function () {
      if (isConsole()) return function (id) { cw.setProps("console-selected", {data: id}); };
      return wallClick;
    },
    set: function (fn) { wallClick = fn; }
  });
})();
