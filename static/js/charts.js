// Tooltips for the pygal charts, without pygal's CDN script: each bar or dot gets a native
// SVG <title> ("label: value", and the series name) built from the <desc> values pygal
// writes next to it. Runs once on load and again after htmx swaps.
(function () {
  function label(trigger) {
    var group = trigger.parentNode;
    var value = group.querySelector("desc.value");
    if (!value) return null;
    var xLabel = group.querySelector("desc.x_label");
    var serie = trigger.closest(".series");
    var name = "";
    var chart = trigger.closest("svg.pygal-chart");
    if (serie && chart) {
      var index = (serie.getAttribute("class").match(/serie-(\d+)/) || [])[1];
      var legend = index !== undefined && chart.querySelector("#activate-serie-" + index + " text");
      name = legend ? legend.textContent : "";
    }
    var text = (xLabel ? xLabel.textContent + ": " : "") + value.textContent;
    return name ? text + " (" + name + ")" : text;
  }
  function decorate(root) {
    root.querySelectorAll("svg.pygal-chart .tooltip-trigger").forEach(function (trigger) {
      if (trigger.querySelector("title")) return;
      var text = label(trigger);
      if (!text) return;
      var title = document.createElementNS("http://www.w3.org/2000/svg", "title");
      title.textContent = text;
      trigger.appendChild(title);
    });
  }
  document.addEventListener("DOMContentLoaded", function () { decorate(document); });
  document.addEventListener("htmx:afterSwap", function (event) { decorate(event.target); });
})();
