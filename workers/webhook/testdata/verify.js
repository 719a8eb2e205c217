// verify.js checks Standard Webhooks signatures with the official npm
// package. It reads one JSON case per line on stdin:
//   {"secret": "whsec_...", "headers": {...}, "body": "..."}
// and prints "ok" or "fail: <reason>" per line.
const { Webhook } = require("standardwebhooks");
const readline = require("readline");

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  const c = JSON.parse(line);
  try {
    new Webhook(c.secret).verify(c.body, c.headers);
    console.log("ok");
  } catch (e) {
    console.log("fail: " + e.message);
  }
});
