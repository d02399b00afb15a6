"""A stand-in for a forge's REST API (GitHub, GitLab or Gitea/Forgejo), for baton's tests.

It keeps pull requests and comments in memory, answers as the forge would, and records every
request. In the GitHub dialect every request is checked against GitHub's published OpenAPI
description (the @octokit/openapi package): its operation must exist, its query parameters must be
declared, and its JSON body must validate against the operation's schema. A request that fails a
check is answered 422 and listed under `failures` in GET /_log.

usage: forge_standin.py KIND --project OWNER/NAME --token T --remote GIT_DIR
       [--openapi api.github.com.json] [--writers LOGIN_OR_ID,...]
Prints "PORT <n>" once it listens on 127.0.0.1.
"""

import argparse
import json
import re
import subprocess
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFIX = {"github": "", "gitlab": "/api/v4", "gitea": "/api/v1"}


class OpenApi:
    """GitHub's operations, by method and path template."""

    def __init__(self, path):
        import jsonschema

        with open(path) as file:
            self.document = json.load(file)
        self.jsonschema = jsonschema
        self.operations = []
        for template, item in self.document["paths"].items():
            pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
            for method, operation in item.items():
                if method in ("get", "post", "patch", "put", "delete"):
                    self.operations.append((method.upper(), re.compile(pattern), template, operation))

    def check(self, method, path, query, body):
        """What is wrong with the request, or None."""
        found = [op for op in self.operations if op[0] == method and op[1].match(path)]
        if not found:
            return f"{method} {path}: no such operation in GitHub's description"
        # The most specific template (fewest parameters) wins, as a router would choose.
        _, _, template, operation = min(found, key=lambda op: op[2].count("{"))
        declared = {}
        for parameter in operation.get("parameters", []):
            if "$ref" in parameter:
                parameter = self.resolve(parameter["$ref"])
            if parameter["in"] == "query":
                declared[parameter["name"]] = parameter
        for name, values in query.items():
            if name not in declared:
                return f"{method} {template}: query parameter {name!r} is not declared"
            error = self.validate(values[0], declared[name].get("schema", {}))
            if error:
                return f"{method} {template}: query parameter {name}: {error}"
        content = operation.get("requestBody", {})
        if "$ref" in content:
            content = self.resolve(content["$ref"])
        schema = content.get("content", {}).get("application/json", {}).get("schema")
        if schema is not None:
            if body is None and content.get("required"):
                return f"{method} {template}: a body is required"
            if body is not None:
                error = self.validate(body, schema)
                if error:
                    return f"{method} {template}: {error}"
        elif body is not None:
            return f"{method} {template}: takes no body"
        return None

    def resolve(self, reference):
        node = self.document
        for part in reference.lstrip("#/").split("/"):
            node = node[part]
        return node

    def validate(self, value, schema):
        rooted = dict(schema, components=self.document["components"])
        validator = self.jsonschema.Draft4Validator(rooted)
        errors = sorted(validator.iter_errors(value), key=lambda e: list(e.path))
        return "; ".join(e.message for e in errors[:3]) or None


class Forge:
    def __init__(self, args):
        self.kind = args.kind
        self.project = args.project
        self.token = args.token
        self.remote = args.remote
        self.writers = set(filter(None, (args.writers or "").split(",")))
        self.openapi = OpenApi(args.openapi) if args.openapi else None
        self.pulls = []
        self.comments = []
        self.requests = []
        self.failures = []
        self.lock = threading.Lock()

    def authorised(self, headers):
        if self.kind == "github":
            return headers.get("Authorization") == f"Bearer {self.token}"
        if self.kind == "gitlab":
            return headers.get("PRIVATE-TOKEN") == self.token
        return headers.get("Authorization") == f"token {self.token}"

    def branch_exists(self, branch):
        done = subprocess.run(
            ["git", "--git-dir", self.remote, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
            capture_output=True,
        )
        return done.returncode == 0

    def view(self, pull):
        if self.kind == "gitlab":
            return {
                "iid": pull["number"],
                "web_url": pull["url"],
                "state": "opened",
                "draft": pull["title"].startswith("Draft:"),
                "title": pull["title"],
                "description": pull["body"],
                "source_branch": pull["head"],
                "target_branch": pull["base"],
            }
        return {
            "number": pull["number"],
            "html_url": pull["url"],
            "state": "open",
            "draft": pull["draft"],
            "title": pull["title"],
            "body": pull["body"],
            "head": {"ref": pull["head"]},
            "base": {"ref": pull["base"]},
            "merged": False,
            "merged_at": None,
        }

    def answer(self, method, path, query, body):
        """(status, JSON) for one request, path without the API's prefix."""
        project = self.project if self.kind != "gitlab" else urllib.parse.quote(self.project, safe="")
        repo = f"/repos/{project}" if self.kind != "gitlab" else f"/projects/{project}"
        pulls = f"{repo}/pulls" if self.kind != "gitlab" else f"{repo}/merge_requests"
        number = re.fullmatch(re.escape(pulls) + r"/(\d+)", path)
        if method == "GET" and path == repo:
            return 200, {"default_branch": "main", "full_name": self.project}
        if method == "GET" and path == pulls:
            found = [p for p in self.pulls if self.listed(p, query)]
            return 200, [self.view(p) for p in found]
        if method == "POST" and path == pulls:
            head = body.get("source_branch") if self.kind == "gitlab" else body.get("head")
            base = body.get("target_branch") if self.kind == "gitlab" else body.get("base")
            if not head or not base or not body.get("title"):
                return 422, {"message": "head, base and title are required"}
            if not self.branch_exists(head):
                return 422, {"message": f"the branch {head} is not on the remote"}
            if any(p["head"] == head for p in self.pulls):
                return 422, {"message": f"a pull request from {head} exists"}
            n = len(self.pulls) + 1
            pull = {
                "number": n,
                "url": f"http://forge.test/{self.project}/pull/{n}",
                "title": body["title"],
                "body": body.get("description") if self.kind == "gitlab" else body.get("body"),
                "draft": bool(body.get("draft")),
                "head": head,
                "base": base,
                "updates": 0,
            }
            self.pulls.append(pull)
            return 201, self.view(pull)
        if number and method in ("PATCH", "PUT"):
            pull = self.pulls[int(number.group(1)) - 1]
            pull["title"] = body.get("title", pull["title"])
            pull["body"] = body.get("description" if self.kind == "gitlab" else "body", pull["body"])
            pull["updates"] += 1
            return 200, self.view(pull)
        writer = re.fullmatch(re.escape(repo) + r"/collaborators/([^/]+)/permission", path)
        if writer and method == "GET" and self.kind != "gitlab":
            login = urllib.parse.unquote(writer.group(1))
            permission = "write" if login in self.writers else "read"
            return 200, {"permission": permission, "role_name": permission, "user": {"login": login}}
        member = re.fullmatch(re.escape(repo) + r"/members/all/(\d+)", path)
        if member and method == "GET":
            if member.group(1) in self.writers:
                return 200, {"id": int(member.group(1)), "access_level": 30}
            return 404, {"message": "404 Not found"}
        comment = re.fullmatch(re.escape(repo) + r"/issues/(\d+)/comments", path)
        note = re.fullmatch(re.escape(pulls) + r"/(\d+)/notes", path)
        if method == "POST" and (comment or note):
            n = int((comment or note).group(1))
            self.comments.append({"number": n, "body": body.get("body")})
            return 201, {"id": len(self.comments), "body": body.get("body")}
        return 404, {"message": "Not Found"}

    def listed(self, pull, query):
        if self.kind == "github":
            head = query.get("head", [""])[0]
            return not head or head == f"{self.project.split('/')[0]}:{pull['head']}"
        if self.kind == "gitlab":
            return query.get("source_branch", [pull["head"]])[0] == pull["head"]
        return True


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["github", "gitlab", "gitea"])
    parser.add_argument("--project", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--remote", required=True)
    parser.add_argument("--openapi")
    parser.add_argument("--writers")
    forge = Forge(parser.parse_args())

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def handle_one(self, method):
            url = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if method == "GET" and url.path == "/_log":
                with forge.lock:
                    log = {"requests": forge.requests, "failures": forge.failures, "pulls": forge.pulls, "comments": forge.comments}
                return self.send(200, log)
            body = json.loads(raw) if raw else None
            query = urllib.parse.parse_qs(url.query)
            with forge.lock:
                forge.requests.append({"method": method, "path": url.path, "query": query, "body": body})
                if not forge.authorised(self.headers):
                    return self.send(401, {"message": "Bad credentials"})
                prefix = PREFIX[forge.kind]
                if not url.path.startswith(prefix + "/"):
                    forge.failures.append(f"{method} {url.path}: outside the API at {prefix}/")
                    return self.send(404, {"message": "Not Found"})
                path = url.path[len(prefix):]
                if forge.openapi:
                    wrong = forge.openapi.check(method, path, query, body)
                    if wrong:
                        forge.failures.append(wrong)
                        return self.send(422, {"message": wrong})
                status, answer = forge.answer(method, path, query, body or {})
                if status >= 400:
                    forge.failures.append(f"{method} {path}: {status} {answer}")
                return self.send(status, answer)

        def send(self, status, value):
            data = json.dumps(value).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self.handle_one("GET")

        def do_POST(self):
            self.handle_one("POST")

        def do_PATCH(self):
            self.handle_one("PATCH")

        def do_PUT(self):
            self.handle_one("PUT")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
