using System.CommandLine;
using MimeKit;
using Subscriptions.Operators;

namespace Subscriptions.CommandLine;

internal static class AdminCommand
{
    public static Command Create()
    {
        var email = new Argument<string>("EMAIL") { Description = "The operator's address, e.g. ops@example.org." };
        email.Validators.Add(result =>
        {
            var value = result.GetValueOrDefault<string>();
            if (!MailboxAddress.TryParse(value, out var mailbox) || mailbox.Address != value || !value.Contains('@', StringComparison.Ordinal))
            {
                result.AddError($"{value}: expected one bare address, e.g. ops@example.org");
            }
        });
        var passwordStdin = new Option<bool>("--password-stdin")
        {
            Description = $"Read the password from the first line of standard input ({OperatorAccounts.MinPasswordLength} to {OperatorAccounts.MaxPasswordLength} characters) instead of generating one.",
        };
        var add = new Command("add", "Create an operator account for the console (/admin), or give an existing one a new password, ending its sessions. " +
            "Prints a generated password once, unless --password-stdin.") { email, passwordStdin };
        add.SetAction(async (result, cancellationToken) =>
        {
            var address = result.GetRequiredValue(email);
            string password;
            if (result.GetValue(passwordStdin))
            {
                password = (await Console.In.ReadLineAsync(cancellationToken) ?? "").TrimEnd('\r', '\n');
                if (password.Length is < OperatorAccounts.MinPasswordLength or > OperatorAccounts.MaxPasswordLength)
                {
                    Console.Error.WriteLine($"The password must be {OperatorAccounts.MinPasswordLength} to {OperatorAccounts.MaxPasswordLength} characters long.");
                    return Verbs.BadArguments;
                }
            }
            else
            {
                password = OperatorAccounts.GeneratePassword();
            }
            using var host = await CommandHost.StartAsync(Verbs.Settings(result), services => services.AddOperatorAccounts());
            var created = await host.Services.GetRequiredService<OperatorAccounts>().AddOrResetAsync(address, password, cancellationToken,
                oneTime: !result.GetValue(passwordStdin));
            Console.WriteLine(created ? $"Created the operator {OperatorAccounts.Normalize(address)}." : $"Set a new password for {OperatorAccounts.Normalize(address)}; its earlier sessions are ended.");
            if (!result.GetValue(passwordStdin))
            {
                // Shown this once; only its hash is stored, and it serves one sign-in, at which the operator chooses their own.
                Console.WriteLine($"Password: {password}");
                Console.WriteLine("It is for one sign-in: the console then asks for a password of your own.");
            }
            return Verbs.Done;
        });
        return new Command("admin", "Operator accounts of the console (/admin).") { add };
    }
}
