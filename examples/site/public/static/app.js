fetch("/api/hello").then(r => r.text()).then(t => document.body.insertAdjacentHTML("beforeend", "<pre>" + t + "</pre>"));
