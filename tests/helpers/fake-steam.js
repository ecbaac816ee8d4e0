// A local stand-in for the Steam Web API's ISteamUser/GetFriendList, so
// matchmaking tests can give hosts friends, or make Steam fail or hang.
import { createServer } from 'node:http';

export async function startFakeSteam({ friends = {}, failing = [], hanging = [] } = {}) {
  const calls = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url, 'http://steam');
    const steamid = url.searchParams.get('steamid');
    calls.push({ path: url.pathname, steamid, key: url.searchParams.get('key') });
    if (url.pathname !== '/ISteamUser/GetFriendList/v0001/') {
      res.writeHead(404).end();
    } else if (hanging.includes(steamid)) {
      // Never answers: only a timeout on the relay's side gets past this.
    } else if (failing.includes(steamid)) {
      res.writeHead(500).end('Internal Server Error');
    } else {
      const list = (friends[steamid] || []).map((id) => ({ steamid: id, relationship: 'friend', friend_since: 0 }));
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ friendslist: { friends: list } }));
    }
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    calls,
    stop: () => { server.closeAllConnections(); return new Promise((r) => server.close(r)); },
  };
}
